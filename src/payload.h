/* payload.h - topics and JSON payloads of SPEC §4 and §5.
 *
 * Pure formatting, no I/O. Every function writes into a caller's buffer
 * and returns the length (like snprintf), or -1 when it did not fit. */
#ifndef MBGATE_PAYLOAD_H
#define MBGATE_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sample.h"

/* P/D/T, or P/D for a device-layout sample. */
int payload_topic(const char *prefix, const sample *s, char *buf, size_t n);

/* {"v":…,"ts":…,"q":"good"[,"hist":true]}, the bad-quality form
 * {"v":null,"ts":…,"q":"bad","error":"…"}, or the device layout
 * {"ts":…,"values":{…}[,"hist":true]}. */
int payload_sample(const sample *s, char *buf, size_t n);

/* {"state":"up"|"down","ts":…[,"error":"…"]} for P/D/status. */
int payload_device_state(bool up, int64_t ts, const char *error, char *buf, size_t n);

/* A JSON value (from a request or reply) as JSON text, numbers printed as
 * SPEC §4 prints them (jansson would print 0.1 as 0.10000000000000001);
 * "null" for NULL. */
void payload_json_text(const json_t *v, char *buf, size_t n);

/* Replace, in place, every byte that is not part of a valid UTF-8
 * sequence with '?': free text from outside (payloads, broker reason
 * strings) or cut by a bounded buffer must not break a JSON document. */
void payload_utf8_clean(char *s);

/* A JSON string literal with quotes, escaped. */
int payload_string(const char *s, char *buf, size_t n);

#endif
