/* check.h - `mbgate check`: a validated config explained for a person:
 * devices, tags with Modicon references, and the read plan per cycle. */
#ifndef MBGATE_CHECK_H
#define MBGATE_CHECK_H

#include <stdio.h>

#include "config.h"

/* Print the report to out and warnings (file permissions) to err.
 * Returns the number of warnings. */
int check_print(const config *cfg, FILE *out, FILE *err);

#endif
