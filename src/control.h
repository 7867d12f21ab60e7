/* control.h - the control socket (SPEC §7): the agent's side.
 *
 * A Unix stream socket (control.socket, mode 0660) serving one JSON request
 * per line with one JSON reply per line. Requests:
 *   {"cmd":"status"}
 *   {"cmd":"read",  "device":"D","tag":"T"}
 *   {"cmd":"write", "device":"D","tag":"T","value":<JSON value>}
 *   {"cmd":"probe", "device":"D","table":"holding","address":100,"count":4}
 * Replies: the status object (schema in README "Status JSON"), or
 *   {"ok":true,"v":…,"ts":…}            read/write
 *   {"ok":true,"table":"holding","address":100,"regs":[…],"ts":…}
 *                                       probe (bits as 0/1)
 *   {"ok":false,"error":"code","detail":"…"}
 * Non-blocking throughout: a silent, slow or hostile client costs the agent
 * nothing but a bounded buffer (requests over 64 KiB close the connection,
 * at most 32 clients at once). */
#ifndef MBGATE_CONTROL_H
#define MBGATE_CONTROL_H

#include <poll.h>
#include <stddef.h>

#include <jansson.h>

#include "bus.h"

#define CONTROL_MAX_CLIENTS 32
#define CONTROL_MAX_REQUEST (64 * 1024)
/* A client that makes no progress this long (silent, stuck in the middle of
 * a request, or not reading its replies) is closed, unless one of its
 * commands is on the bus. control_handle() checks: call it on every loop
 * turn, also when poll() timed out. */
#ifndef CONTROL_IDLE_MS
#define CONTROL_IDLE_MS 30000
#endif

typedef struct {
    /* The status object (new reference). */
    json_t *(*status)(void *ctx);
    /* read/write/probe request from client: either an immediate reply
     * (new reference), or NULL when a bus command was submitted whose
     * completion the agent hands to control_reply_cmd(). */
    json_t *(*submit)(void *ctx, int client, const char *cmd, const json_t *req);
} control_hooks;

typedef struct control control;

/* Create the socket at path: a stale socket is removed, a path that is not
 * a socket (or a symlink) is refused. NULL with err filled on failure. */
control *control_open(const char *path, const control_hooks *hooks, void *ctx,
                      char *err, size_t errlen);
/* Close every connection and remove the socket file. */
void control_close(control *c);

/* Fill up to max pollfds for the listener and clients; returns how many. */
int control_pollfds(control *c, struct pollfd *fds, int max);
/* Handle the revents of the pollfds filled by control_pollfds. */
void control_handle(control *c, const struct pollfd *fds, int n);

/* A submitted command finished: reply to client (if still connected). */
void control_reply_cmd(control *c, int client, const bus_cmd *cmd);

#endif
