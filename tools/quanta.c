/* quanta: the command-line tool. */
#include "cli.h"
#include "commands.h"
#include "model_commands.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"devices", qn_cmd_devices, "list backends and GPUs"},
    {"compile", qn_cmd_compile, "compile every kernel for the device ahead of time"},
    {"inspect", qn_cmd_inspect, "metadata and tensor table of a GGUF or safetensors file (--json)"},
    {"dump", qn_cmd_dump, "a tensor dequantized to float32 as a .npy file"},
    {"quantize", qn_cmd_quantize, "rewrite a GGUF with its weights quantized to a type"},
    {"run", qn_cmd_run, "generate text with a model (the default model without -m)"},
    {"logits", qn_cmd_logits, "the most likely next tokens after a prompt (--json)"},
    {"bench", qn_cmd_bench, "run benchmark cases (--list names them)"},
};

static void usage(FILE *f) {
    fprintf(f, "quanta %s: quantized LLM inference on NVIDIA GPUs and CPUs\n\nusage: quanta COMMAND [ARGS]\n\n",
            qn_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nenvironment: QUANTA_BACKEND=cpu|cuda, QUANTA_DEVICE=N, QUANTA_THREADS=N, QUANTA_CACHE_DIR=DIR\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("quanta %s\n", qn_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "quanta: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
