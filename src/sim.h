/* sim.h - `mbgate sim`: a Modbus TCP PLC simulator serving a config's tags.
 *
 * Numbers drift within min/max, bools toggle, strings and "fixed" tags keep
 * their sim_value, "counter" tags increment on every read that covers them
 * (so tests can prove that no sample was lost), and writes are kept (a
 * written tag stops changing). Devices with different unit ids get their
 * own register maps. */
#ifndef MBGATE_SIM_H
#define MBGATE_SIM_H

#include "config.h"

/* Serve until SIGTERM/SIGINT. listen "HOST:PORT", or NULL for the first
 * device's host and port. Returns the exit status. */
int sim_run(const config *cfg, const char *listen);

#endif
