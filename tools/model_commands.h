/* Model subcommands of the quanta tool (cmd_run.c, cmd_logits.c). Each takes
 * argv[0] as the command name and returns the process exit code. */
#ifndef QN_TOOLS_MODEL_COMMANDS_H
#define QN_TOOLS_MODEL_COMMANDS_H

#include "quanta.h"

/* quanta run [-m FILE] -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]
 * [--seed S] [--ctx N] [--backend cpu|cuda] [--chat]: generate text; without
 * -p on a terminal, an interactive chat. */
int qn_cmd_run(int argc, char **argv);
/* quanta logits [-m FILE] -p PROMPT [--top K] [--json]: the K most likely
 * next tokens after the prompt. */
int qn_cmd_logits(int argc, char **argv);

/* Shared by the two: the default model's path (the cache that
 * scripts/fetch-model.sh fills) into buf. */
const char *qn_default_model_path(char *buf, size_t len);
/* Open the device and load the model at `path` (NULL: the default), with a
 * progress bar on a terminal; on failure print why (and how to fetch the
 * default model when it is missing) and return 1. */
int qn_model_open_cli(const char *path, qn_backend backend, qn_device **dev, qn_model **model);

#endif
