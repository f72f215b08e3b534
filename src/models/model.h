/* What the generic model code (model.c) shares with each architecture file
 * (gemma3.c, ...): the model and context objects, the architecture table
 * and the checked metadata and tensor readers. A new architecture is one
 * file that fills a qn_arch and one line in model.c's table. */
#ifndef QN_MODELS_MODEL_H
#define QN_MODELS_MODEL_H

#include "quanta.h"
#include "core/error.h"

typedef struct qn_arch qn_arch;

struct qn_model {
    qn_device *dev;
    qn_gguf *gguf;
    qn_tokenizer *tok;
    const qn_arch *arch;
    void *weights;          /* the architecture's hyperparameters and tensors */
    qn_model_info info;
    qn_buffer **bufs;       /* every uploaded tensor, freed with the model    */
    size_t n_bufs;
    uint64_t load_total;    /* progress: bytes to upload, bytes done          */
    uint64_t load_done;
    qn_progress_fn progress;
    void *progress_user;
};

struct qn_context {
    qn_model *m;
    int32_t n_ctx;
    int32_t chunk;          /* most tokens one forward pass takes             */
    int32_t pos;            /* tokens in the cache                            */
    qn_encoder *enc;
    qn_buffer *ids;         /* i32 [chunk]: the tokens of a pass; ids[0] also
                               receives the sampled token                    */
    qn_buffer *positions;   /* i32 [chunk]: p0 + t for token t               */
    qn_buffer *logits;      /* f32 [n_vocab]: the last token's logits        */
    qn_buffer *counter;     /* i32 [1]: the sampler's draw counter            */
    qn_graph *step;         /* decode step + sample, captured on first use     */
    qn_sample_params step_params;
    bool sampled;           /* ids[0] holds a sampled token not yet evaluated */
    int32_t *host_pos;      /* [chunk] staging for positions                  */
    void *state;            /* the architecture's caches and scratch          */
};

struct qn_arch {
    const char *name; /* general.architecture */
    /* Read hyperparameters and upload tensors (through qn_model_tensor);
     * set m->weights and m->info's sizes. */
    qn_status (*load)(qn_model *m);
    void (*free)(qn_model *m);
    /* Allocate c->state (caches, scratch) for c->n_ctx and c->chunk. */
    qn_status (*context_init)(qn_context *c);
    void (*context_free)(qn_context *c);
    /* Encode the forward pass of n (1 .. chunk) tokens whose ids and
     * positions are in c->ids and c->positions, writing the last token's
     * logits to c->logits. Encodes only: reads nothing from the host, so a
     * pass of one token can be captured as a graph. */
    qn_status (*forward)(qn_context *c, qn_encoder *enc, int32_t n);
};

/* Queue one decode step at position pos on c's encoder (pos into
 * c->positions, then the captured step graph: the forward pass of ids[0]
 * and the sampler writing the next id over it) without waiting: steps
 * queued back to back feed each other's ids on the device. Needs c->step
 * (qn_context_decode captures it). Leaves c->pos alone. */
qn_status qn_context_queue_step(qn_context *c, int32_t pos);

/* ---- checked metadata (keys named in every error) */

/* An integer (or bool) key. Absent: `def` when not required, else
 * QN_ERR_FORMAT. Another type: QN_ERR_FORMAT naming key and type. */
qn_status qn_meta_int(const qn_gguf *g, const char *key, bool required, int64_t def, int64_t *out);
/* A float32/float64 key (integers accepted). */
qn_status qn_meta_float(const qn_gguf *g, const char *key, bool required, double def, double *out);
/* A required string key (a view into the file). */
qn_status qn_meta_str(const qn_gguf *g, const char *key, const char **s, size_t *len);
/* A required array of elem type with `count` elements (-1: any). */
qn_status qn_meta_array(const qn_gguf *g, const char *key, qn_gguf_type elem, int64_t count, qn_gguf_value *out);

/* "<arch>.<suffix>" into buf. */
const char *qn_arch_key(const qn_model *m, const char *suffix, char *buf, size_t len);

/* The tensor `name` uploaded to the model's device, after checking it has
 * n_dims dimensions of the given sizes. Missing: QN_ERR_FORMAT "tensor NAME
 * is missing"; wrong shape: QN_ERR_FORMAT naming both shapes. */
qn_status qn_model_tensor(qn_model *m, const char *name, int n_dims, const int64_t *ne, qn_buffer **out);
/* The type of tensor `name` (missing: QN_ERR_FORMAT). */
qn_status qn_model_tensor_type(qn_model *m, const char *name, qn_dtype *type);
/* The type a stack of tensors of types a and b takes (see
 * qn_model_tensor_stack): their common type, or the wider of two symmetric
 * 32-element types (q4_0, q5_0, q8_0), whose blocks hold the narrower's
 * values exactly. false: they cannot share a stack. */
bool qn_model_stack_type(qn_dtype a, qn_dtype b, qn_dtype *common);
/* n 2-D tensors [ne0, ne1[i]] stacked into one buffer [ne0, sum of ne1]
 * (rows of the first, then of the second, ...), so one matvec computes all
 * their outputs (fused projections). Each is checked as qn_model_tensor
 * checks. Their types must pair by qn_model_stack_type (a pair that does
 * not is QN_ERR_UNSUPPORTED naming both); a narrower one is widened on the
 * host to the stack's type, so the stack's values are the file's. */
qn_status qn_model_tensor_stack(qn_model *m, const char *const *names, int n, int64_t ne0, const int64_t *ne1,
                                qn_buffer **out);

#endif
