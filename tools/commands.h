/* File-format subcommands of the quanta tool (cmd_formats.c). Each takes
 * argv[0] as the command name and returns the process exit code. */
#ifndef QN_TOOLS_COMMANDS_H
#define QN_TOOLS_COMMANDS_H

/* quanta inspect FILE [--json]: metadata and tensor table of a GGUF or
 * safetensors file. */
int qn_cmd_inspect(int argc, char **argv);
/* quanta dump FILE TENSOR -o OUT.npy: a tensor as float32 NumPy data. */
int qn_cmd_dump(int argc, char **argv);
/* quanta quantize IN.gguf OUT.gguf TYPE|keep [--random SEED]: weights (2-D
 * and up) to TYPE, or each in its own type; --random: a same-shape file of
 * random weights, for benchmarks. */
int qn_cmd_quantize(int argc, char **argv);

#endif
