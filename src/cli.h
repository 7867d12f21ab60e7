/* cli.h - the technician commands (SPEC §2, §7): the client side of the
 * control socket.
 *
 * Each function runs one request/reply exchange with the running agent
 * (5 s for the whole exchange), prints the outcome, and returns the exit
 * code of the process. Failures are reported on stderr as one line. */
#ifndef MBGATE_CLI_H
#define MBGATE_CLI_H

#include <stdbool.h>

/* Exit codes of mbgate status (Nagios style, SPEC §7). */
enum { CLI_OK = 0, CLI_WARNING = 1, CLI_CRITICAL = 2, CLI_UNKNOWN = 3 };
/* Exit code of read/write/probe for arguments that cannot be sent. */
#define CLI_USAGE 2

/* The agent's status, as a report for a technician or (json) as the status
 * object exactly as the agent sent it. Returns the status's health code
 * (0 OK, 1 WARNING, 2 CRITICAL), or 3 UNKNOWN when the agent cannot be
 * reached or answers nonsense (then an "UNKNOWN: ..." line on stdout too,
 * unless json). */
int cli_status(const char *socket_path, bool json);

/* Read tag dev/tag now: prints "D/T = VALUE"; 0, or 1 on any failure. */
int cli_read(const char *socket_path, const char *dev, const char *tag);

/* Write value_text (JSON if it parses as JSON, else taken as a string) to
 * dev/tag with the setpoint validation: prints "D/T = VALUE: ok (read back
 * VALUE)"; 0, or 1 on any failure. */
int cli_write(const char *socket_path, const char *dev, const char *tag,
              const char *value_text);

/* Read count (0: 4; at most 125) registers or bits of table ("coil",
 * "discrete", "input", "holding") from address, and print every decoding
 * side by side. 0, 1 on a failure, CLI_USAGE for bad arguments. */
int cli_probe(const char *socket_path, const char *dev, const char *table,
              unsigned address, unsigned count);

#endif
