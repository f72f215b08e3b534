/* Shared helpers of the quanta command-line tool. */
#ifndef QN_TOOLS_CLI_H
#define QN_TOOLS_CLI_H

#include "quanta.h"

#include <stdio.h>

/* Print "quanta: <what>: <qn_last_error()>" to stderr and return 1. */
int qn_cli_fail(const char *what, qn_status s);

/* Parse "--backend cpu|cuda|auto"; returns 0 on success. */
int qn_cli_backend(const char *name, qn_backend *out);

/* Monotonic time in microseconds. */
double qn_cli_now_us(void);

/* Print an encoder's per-op profile as a table (op, calls, total, mean). */
void qn_cli_print_profile(qn_encoder *enc, FILE *out);

/* Subcommands: int qn_cmd_X(int argc, char **argv), argv[0] the name. */
int qn_cmd_devices(int argc, char **argv);
int qn_cmd_compile(int argc, char **argv);
int qn_cmd_bench(int argc, char **argv);

#endif
