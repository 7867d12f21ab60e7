/* agent.h - `mbgate run`: wires config, bus threads, outbox, broker and
 * control socket together in one event loop on the main thread. */
#ifndef MBGATE_AGENT_H
#define MBGATE_AGENT_H

/* Run until SIGTERM/SIGINT; SIGHUP reloads config_path. Returns the exit
 * status for main (0 after a clean shutdown, 1 when startup failed). */
int agent_run(const char *config_path);

#endif
