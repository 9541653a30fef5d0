/* Restricted pickle interpreter: data opcodes plus a fixed allow-list of torch globals.
 * See pickle.h for the contract. The interpreter is a loop over opcodes with an explicit
 * value stack and mark stack; it allocates every value in the arena and frees nothing until
 * pk_arena_destroy, which makes memo sharing and error paths trivially safe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "io/pickle.h"

static const char *const kind_names[PK_KIND_COUNT] = {
    "None", "bool", "int", "big int", "float", "str", "bytes", "tuple", "list", "dict",
    "global", "storage", "tensor"};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == PK_KIND_COUNT, "kind table");

const char *pk_kind_name(pk_kind k) { return (unsigned)k < PK_KIND_COUNT ? kind_names[k] : "?"; }

struct pk_arena {
    pk_value *head;
};

pk_arena *pk_arena_create(void)
{
    pk_arena *a = calloc(1, sizeof *a);
    if (!a) ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    return a;
}

void pk_arena_destroy(pk_arena *a)
{
    if (!a) return;
    pk_value *v = a->head;
    while (v) {
        pk_value *next = v->next_alloc;
        switch (v->kind) {
        case PK_STR: case PK_BYTES: case PK_BIGINT: free(v->u.str.s); break;
        case PK_TUPLE: case PK_LIST: free(v->u.seq.items); break;
        case PK_DICT: free(v->u.dict.keys); free(v->u.dict.vals); break;
        default: break;
        }
        free(v);
        v = next;
    }
    free(a);
}

static pk_value *new_value(pk_arena *a, pk_kind kind)
{
    pk_value *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind;
    v->next_alloc = a->head;
    a->head = v;
    return v;
}

const pk_value *pk_dict_get(const pk_value *d, const char *key)
{
    if (!d || d->kind != PK_DICT) return NULL;
    for (size_t i = 0; i < d->u.dict.n; i++) {
        const pk_value *k = d->u.dict.keys[i];
        if (k->kind == PK_STR && !strcmp(k->u.str.s, key)) return d->u.dict.vals[i];
    }
    return NULL;
}

/* ---- the allow-list ------------------------------------------------------------------- */

typedef struct allowed_global {
    const char *module, *name;
    pk_global which;
    st_dtype dtype;
} allowed_global;

static const allowed_global allowed[] = {
    {"collections", "OrderedDict", PKG_ORDERED_DICT, ST_F32},
    {"torch._utils", "_rebuild_tensor", PKG_REBUILD_TENSOR, ST_F32},
    {"torch._utils", "_rebuild_tensor_v2", PKG_REBUILD_TENSOR_V2, ST_F32},
    {"torch._utils", "_rebuild_parameter", PKG_REBUILD_PARAMETER, ST_F32},
    {"torch", "FloatStorage", PKG_STORAGE_TYPE, ST_F32},
    {"torch", "HalfStorage", PKG_STORAGE_TYPE, ST_F16},
    {"torch", "BFloat16Storage", PKG_STORAGE_TYPE, ST_BF16},
    {"torch", "DoubleStorage", PKG_STORAGE_TYPE, ST_F64},
    {"torch", "LongStorage", PKG_STORAGE_TYPE, ST_I64},
    {"torch", "IntStorage", PKG_STORAGE_TYPE, ST_I32},
    {"torch", "ShortStorage", PKG_STORAGE_TYPE, ST_I16},
    {"torch", "CharStorage", PKG_STORAGE_TYPE, ST_I8},
    {"torch", "ByteStorage", PKG_STORAGE_TYPE, ST_U8},
    {"torch", "BoolStorage", PKG_STORAGE_TYPE, ST_BOOL},
};

/* Opcode names for messages, so a refused opcode is named as pickletools would name it. */
static const char *opcode_name(uint8_t op)
{
    switch (op) {
    case '(': return "MARK"; case '.': return "STOP"; case '0': return "POP"; case '1': return "POP_MARK";
    case '2': return "DUP"; case 'F': return "FLOAT"; case 'I': return "INT"; case 'J': return "BININT";
    case 'K': return "BININT1"; case 'L': return "LONG"; case 'M': return "BININT2"; case 'N': return "NONE";
    case 'P': return "PERSID"; case 'Q': return "BINPERSID"; case 'R': return "REDUCE"; case 'S': return "STRING";
    case 'T': return "BINSTRING"; case 'U': return "SHORT_BINSTRING"; case 'V': return "UNICODE";
    case 'X': return "BINUNICODE"; case 'a': return "APPEND"; case 'b': return "BUILD"; case 'c': return "GLOBAL";
    case 'd': return "DICT"; case '}': return "EMPTY_DICT"; case 'e': return "APPENDS"; case 'g': return "GET";
    case 'h': return "BINGET"; case 'i': return "INST"; case 'j': return "LONG_BINGET"; case 'l': return "LIST";
    case ']': return "EMPTY_LIST"; case 'o': return "OBJ"; case 'p': return "PUT"; case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT"; case 's': return "SETITEM"; case 't': return "TUPLE"; case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS"; case 'G': return "BINFLOAT"; case 0x80: return "PROTO"; case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1"; case 0x83: return "EXT2"; case 0x84: return "EXT4"; case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2"; case 0x87: return "TUPLE3"; case 0x88: return "NEWTRUE"; case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1"; case 0x8b: return "LONG4"; case 'B': return "BINBYTES"; case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE"; case 0x8d: return "BINUNICODE8"; case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET"; case 0x90: return "ADDITEMS"; case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX"; case 0x93: return "STACK_GLOBAL"; case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME"; case 0x96: return "BYTEARRAY8"; case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return "unknown opcode";
    }
}

/* ---- interpreter state ------------------------------------------------------------------ */

typedef struct vm {
    pk_arena *a;
    const uint8_t *buf;
    size_t size, pos, op_pos;
    const char *what;
    pk_value **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t nmarks, marks_cap;
    pk_value **memo;
    size_t memo_len;
    size_t memo_next;   /* MEMOIZE's index: pickle writes the memo densely, so len(memo) */
} vm;

/* Memo indices are written sequentially by pickle; a huge jump can only come from a corrupt
 * or hostile file, so it is refused instead of allocating for it. */
#define MEMO_MAX_GAP ((size_t)1 << 20)

static int nomem(void) { return ferc_set_error(FERC_ERR_NOMEM, "out of memory"); }

static int bad(vm *m, const char *why)
{
    return ferc_set_error(FERC_ERR_FORMAT, "%s: %s (pickle opcode %s at byte %zu)", m->what, why,
                          opcode_name(m->buf[m->op_pos]), m->op_pos);
}

static int need(vm *m, size_t n, const uint8_t **p)
{
    if (n > m->size - m->pos)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: pickle ends inside opcode %s at byte %zu (truncated file?)",
                              m->what, opcode_name(m->buf[m->op_pos]), m->op_pos);
    *p = m->buf + m->pos;
    m->pos += n;
    return FERC_OK;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int push(vm *m, pk_value *v)
{
    if (!v) return nomem();
    if (m->sp == m->stack_cap) {
        size_t cap = m->stack_cap ? 2 * m->stack_cap : 64;
        pk_value **s = realloc(m->stack, cap * sizeof *s);
        if (!s) return nomem();
        m->stack = s;
        m->stack_cap = cap;
    }
    m->stack[m->sp++] = v;
    return FERC_OK;
}

static size_t floor_sp(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static int pop(vm *m, pk_value **v)
{
    if (m->sp <= floor_sp(m)) return bad(m, "stack underflow");
    *v = m->stack[--m->sp];
    return FERC_OK;
}

static int top(vm *m, pk_value **v)
{
    if (m->sp <= floor_sp(m)) return bad(m, "stack underflow");
    *v = m->stack[m->sp - 1];
    return FERC_OK;
}

/* Pops back to the last MARK; the items above it are m->stack[*from .. m->sp) on return
 * (still valid until the next push). */
/* &m->stack[i]; NULL for an empty stack that was never allocated (no arithmetic on NULL). */
static pk_value **stack_at(vm *m, size_t i) { return m->stack ? m->stack + i : NULL; }

static int pop_mark(vm *m, size_t *from)
{
    if (!m->nmarks) return bad(m, "no MARK on the stack");
    *from = m->marks[--m->nmarks];
    return FERC_OK;
}

static int seq_append(pk_value *s, pk_value *item)
{
    if (s->u.seq.n == s->u.seq.cap) {
        size_t cap = s->u.seq.cap ? 2 * s->u.seq.cap : 4;
        pk_value **it = realloc(s->u.seq.items, cap * sizeof *it);
        if (!it) return nomem();
        s->u.seq.items = it;
        s->u.seq.cap = cap;
    }
    s->u.seq.items[s->u.seq.n++] = item;
    return FERC_OK;
}

static int dict_set(pk_value *d, pk_value *k, pk_value *v)
{
    /* Replacing an existing string key keeps Python's semantics (last one wins, first position). */
    if (k->kind == PK_STR) {
        for (size_t i = 0; i < d->u.dict.n; i++) {
            pk_value *o = d->u.dict.keys[i];
            if (o->kind == PK_STR && o->u.str.len == k->u.str.len && !memcmp(o->u.str.s, k->u.str.s, k->u.str.len)) {
                d->u.dict.vals[i] = v;
                return FERC_OK;
            }
        }
    }
    if (d->u.dict.n == d->u.dict.cap) {
        size_t cap = d->u.dict.cap ? 2 * d->u.dict.cap : 8;
        pk_value **ks = realloc(d->u.dict.keys, cap * sizeof *ks);
        if (!ks) return nomem();
        d->u.dict.keys = ks;
        pk_value **vs = realloc(d->u.dict.vals, cap * sizeof *vs);
        if (!vs) return nomem();
        d->u.dict.vals = vs;
        d->u.dict.cap = cap;
    }
    d->u.dict.keys[d->u.dict.n] = k;
    d->u.dict.vals[d->u.dict.n] = v;
    d->u.dict.n++;
    return FERC_OK;
}

static pk_value *new_int(vm *m, int64_t i)
{
    pk_value *v = new_value(m->a, PK_INT);
    if (v) v->u.i = i;
    return v;
}

static pk_value *new_bytes(vm *m, pk_kind kind, const uint8_t *p, size_t n)
{
    pk_value *v = new_value(m->a, kind);
    if (!v) return NULL;
    v->u.str.s = malloc(n + 1);
    if (!v->u.str.s) return NULL;  /* the arena still frees v */
    memcpy(v->u.str.s, p, n);
    v->u.str.s[n] = 0;
    v->u.str.len = n;
    return v;
}

static pk_value *new_tuple_from(vm *m, pk_value **items, size_t n)
{
    pk_value *t = new_value(m->a, PK_TUPLE);
    if (!t) return NULL;
    for (size_t i = 0; i < n; i++)
        if (seq_append(t, items[i])) return NULL;
    return t;
}

static int memo_put(vm *m, size_t idx, pk_value *v)
{
    if (idx >= m->memo_len) {
        if (idx - m->memo_len > MEMO_MAX_GAP) return bad(m, "memo index out of range");
        size_t len = idx + 1 > 2 * m->memo_len ? idx + 1 : 2 * m->memo_len;
        pk_value **mm = realloc(m->memo, len * sizeof *mm);
        if (!mm) return nomem();
        memset(mm + m->memo_len, 0, (len - m->memo_len) * sizeof *mm);
        m->memo = mm;
        m->memo_len = len;
    }
    m->memo[idx] = v;
    if (idx >= m->memo_next) m->memo_next = idx + 1;
    return FERC_OK;
}

static int memo_get(vm *m, size_t idx)
{
    if (idx >= m->memo_len || !m->memo[idx]) return bad(m, "memo entry read before it was written");
    return push(m, m->memo[idx]);
}

static int resolve_global(vm *m, const char *module, size_t mlen, const char *name, size_t nlen)
{
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        if (strlen(allowed[i].module) == mlen && !memcmp(allowed[i].module, module, mlen) &&
            strlen(allowed[i].name) == nlen && !memcmp(allowed[i].name, name, nlen)) {
            pk_value *g = new_value(m->a, PK_GLOBAL);
            if (!g) return nomem();
            g->u.g.which = allowed[i].which;
            g->u.g.dtype = allowed[i].dtype;
            return push(m, g);
        }
    }
    /* Print at most a sane length, with control characters replaced, so the message stays readable. */
    char shown[160];
    size_t k = 0;
    for (size_t i = 0; i < mlen + 1 + nlen && k + 1 < sizeof shown; i++) {
        char c = i < mlen ? module[i] : i == mlen ? '.' : name[i - mlen - 1];
        shown[k++] = (c >= 32 && c < 127) ? c : '?';
    }
    shown[k] = 0;
    return ferc_set_error(FERC_ERR_UNSUPPORTED,
                          "%s: refusing pickle global '%s' at byte %zu: only the globals torch.save writes "
                          "for a state_dict are allowed (a file holding a whole pickled model or arbitrary "
                          "objects cannot be imported; save model.state_dict()); nothing was executed",
                          m->what, shown, m->op_pos);
}

static bool is_int(const pk_value *v) { return v->kind == PK_INT; }

static int int_tuple(vm *m, const pk_value *t, int64_t *out, int *n, const char *what)
{
    if (t->kind != PK_TUPLE && t->kind != PK_LIST) return bad(m, what);
    if (t->u.seq.n > PK_MAX_DIMS) return bad(m, "tensor has too many dimensions");
    for (size_t i = 0; i < t->u.seq.n; i++) {
        if (!is_int(t->u.seq.items[i]) || t->u.seq.items[i]->u.i < 0) return bad(m, what);
        out[i] = t->u.seq.items[i]->u.i;
    }
    *n = (int)t->u.seq.n;
    return FERC_OK;
}

static int rebuild_tensor(vm *m, const pk_value *args, pk_value **out)
{
    const pk_value *const *a = (const pk_value *const *)args->u.seq.items;
    if (args->u.seq.n < 4) return bad(m, "_rebuild_tensor needs (storage, offset, size, stride, ...)");
    if (a[0]->kind != PK_STORAGE) return bad(m, "_rebuild_tensor's first argument is not a storage");
    if (!is_int(a[1]) || a[1]->u.i < 0) return bad(m, "_rebuild_tensor has a bad storage offset");
    pk_value *t = new_value(m->a, PK_TENSOR);
    if (!t) return nomem();
    t->u.tensor.storage = a[0];
    t->u.tensor.offset = a[1]->u.i;
    int nd, ns;
    int rc = int_tuple(m, a[2], t->u.tensor.shape, &nd, "_rebuild_tensor has a bad size tuple");
    if (!rc) rc = int_tuple(m, a[3], t->u.tensor.stride, &ns, "_rebuild_tensor has a bad stride tuple");
    if (rc) return rc;
    if (nd != ns) return bad(m, "_rebuild_tensor's size and stride differ in length");
    t->u.tensor.ndim = nd;
    *out = t;
    return FERC_OK;
}

static int do_reduce(vm *m)
{
    pk_value *args = NULL, *fn = NULL, *res = NULL;
    int rc = pop(m, &args);
    if (!rc) rc = pop(m, &fn);
    if (rc) return rc;
    if (fn->kind != PK_GLOBAL) return bad(m, "REDUCE of something that is not a callable global");
    if (args->kind != PK_TUPLE) return bad(m, "REDUCE arguments are not a tuple");
    switch (fn->u.g.which) {
    case PKG_ORDERED_DICT:
        if (args->u.seq.n != 0) return bad(m, "OrderedDict called with arguments");
        res = new_value(m->a, PK_DICT);
        if (!res) return nomem();
        break;
    case PKG_REBUILD_TENSOR:
    case PKG_REBUILD_TENSOR_V2:
        rc = rebuild_tensor(m, args, &res);
        if (rc) return rc;
        break;
    case PKG_REBUILD_PARAMETER:
        if (args->u.seq.n < 1 || args->u.seq.items[0]->kind != PK_TENSOR)
            return bad(m, "_rebuild_parameter without a tensor");
        res = args->u.seq.items[0];
        break;
    case PKG_STORAGE_TYPE:
        return bad(m, "a torch storage type may only appear inside a persistent id");
    }
    return push(m, res);
}

/* ('storage', StorageType, key, location, numel)            zip format
 * ('storage', StorageType, key, location, numel, view)      legacy; view is None or
 *                                                            (view_key, offset, view_numel) */
static int do_persid(vm *m)
{
    pk_value *pid = NULL;
    int rc = pop(m, &pid);
    if (rc) return rc;
    if (pid->kind != PK_TUPLE || pid->u.seq.n < 5 || pid->u.seq.n > 6)
        return bad(m, "persistent id is not a ('storage', type, key, location, numel) tuple");
    pk_value **it = pid->u.seq.items;
    if (it[0]->kind != PK_STR || strcmp(it[0]->u.str.s, "storage"))
        return bad(m, "persistent id does not start with 'storage'");
    if (it[1]->kind != PK_GLOBAL || it[1]->u.g.which != PKG_STORAGE_TYPE)
        return bad(m, "persistent id does not name a torch storage type");
    if (it[2]->kind != PK_STR) return bad(m, "storage key is not a string");
    if (!is_int(it[4]) || it[4]->u.i < 0) return bad(m, "storage size is not a non-negative int");
    pk_value *s = new_value(m->a, PK_STORAGE);
    if (!s) return nomem();
    s->u.storage.key = it[2]->u.str.s;
    s->u.storage.dtype = it[1]->u.g.dtype;
    s->u.storage.numel = it[4]->u.i;
    s->u.storage.view_numel = -1;
    if (pid->u.seq.n == 6 && it[5]->kind != PK_NONE) {
        const pk_value *v = it[5];
        if (v->kind != PK_TUPLE || v->u.seq.n != 3 || !is_int(v->u.seq.items[1]) || !is_int(v->u.seq.items[2]) ||
            v->u.seq.items[1]->u.i < 0 || v->u.seq.items[2]->u.i < 0)
            return bad(m, "storage view metadata is not (key, offset, size)");
        s->u.storage.view_offset = v->u.seq.items[1]->u.i;
        s->u.storage.view_numel = v->u.seq.items[2]->u.i;
        if (s->u.storage.view_offset > s->u.storage.numel ||
            s->u.storage.view_numel > s->u.storage.numel - s->u.storage.view_offset)
            return bad(m, "storage view lies outside its storage");
    }
    return push(m, s);
}

static int do_build(vm *m)
{
    pk_value *state = NULL, *obj = NULL;
    int rc = pop(m, &state);
    if (!rc) rc = top(m, &obj);
    if (rc) return rc;
    /* OrderedDict state dicts carry `_metadata` (module versions) as instance state; the
     * tensors do not depend on it, so it is accepted and dropped. */
    if (obj->kind == PK_DICT && (state->kind == PK_DICT || state->kind == PK_NONE)) return FERC_OK;
    return bad(m, "BUILD on an object other than an OrderedDict");
}

static int run(vm *m, pk_value **out)
{
    const uint8_t *p;
    int rc = FERC_OK;
    for (;;) {
        m->op_pos = m->pos;
        if (m->pos >= m->size)
            return ferc_set_error(FERC_ERR_FORMAT, "%s: pickle ends at byte %zu without STOP (truncated file?)",
                                  m->what, m->pos);
        uint8_t op = m->buf[m->pos++];
        pk_value *v = NULL, *w = NULL, *x = NULL;
        size_t from = 0, n;
        switch (op) {
        case 0x80: /* PROTO */
            if ((rc = need(m, 1, &p))) return rc;
            if (p[0] < 2 || p[0] > 5) return bad(m, "unsupported pickle protocol");
            break;
        case 0x95: /* FRAME: a length hint only */
            if ((rc = need(m, 8, &p))) return rc;
            break;
        case '.': /* STOP */
            if (m->sp != 1 || m->nmarks) return bad(m, "STOP with a malformed stack");
            *out = m->stack[0];
            return FERC_OK;
        case '(': /* MARK */
            if (m->nmarks == m->marks_cap) {
                size_t cap = m->marks_cap ? 2 * m->marks_cap : 16;
                size_t *mk = realloc(m->marks, cap * sizeof *mk);
                if (!mk) return nomem();
                m->marks = mk;
                m->marks_cap = cap;
            }
            m->marks[m->nmarks++] = m->sp;
            break;
        case '0': /* POP */
            if ((rc = pop(m, &v))) return rc;
            break;
        case '1': /* POP_MARK */
            if ((rc = pop_mark(m, &from))) return rc;
            m->sp = from;
            break;
        case 'N': rc = push(m, new_value(m->a, PK_NONE)); break;
        case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
            v = new_value(m->a, PK_BOOL);
            if (v) v->u.b = op == 0x88;
            rc = push(m, v);
            break;
        case 'J':
            if ((rc = need(m, 4, &p))) return rc;
            rc = push(m, new_int(m, (int32_t)(uint32_t)le(p, 4)));
            break;
        case 'K':
            if ((rc = need(m, 1, &p))) return rc;
            rc = push(m, new_int(m, p[0]));
            break;
        case 'M':
            if ((rc = need(m, 2, &p))) return rc;
            rc = push(m, new_int(m, (int64_t)le(p, 2)));
            break;
        case 0x8a: case 0x8b: /* LONG1, LONG4 */
            if ((rc = need(m, op == 0x8a ? 1 : 4, &p))) return rc;
            n = (size_t)le(p, op == 0x8a ? 1 : 4);
            if ((rc = need(m, n, &p))) return rc;
            if (n <= 8) {
                uint64_t u = le(p, (int)n);
                if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
                rc = push(m, new_int(m, (int64_t)u));
            } else {
                rc = push(m, new_bytes(m, PK_BIGINT, p, n));
            }
            break;
        case 'G': /* BINFLOAT, big-endian */
            if ((rc = need(m, 8, &p))) return rc;
            {
                uint64_t u = 0;
                for (int i = 0; i < 8; i++) u = (u << 8) | p[i];
                v = new_value(m->a, PK_FLOAT);
                if (v) memcpy(&v->u.f, &u, 8);
                rc = push(m, v);
            }
            break;
        case 'X': case 0x8c: case 0x8d: case 'T': case 'U': /* unicode and py2 str */
        case 'B': case 'C': case 0x8e: {                      /* bytes */
            int lb = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
            if ((rc = need(m, (size_t)lb, &p))) return rc;
            uint64_t len = le(p, lb);
            if (len > m->size - m->pos)
                return ferc_set_error(FERC_ERR_FORMAT, "%s: string at byte %zu runs past the end (truncated file?)",
                                      m->what, m->op_pos);
            if ((rc = need(m, (size_t)len, &p))) return rc;
            bool bytes = op == 'B' || op == 'C' || op == 0x8e;
            rc = push(m, new_bytes(m, bytes ? PK_BYTES : PK_STR, p, (size_t)len));
            break;
        }
        case ')': rc = push(m, new_value(m->a, PK_TUPLE)); break;
        case 't': /* TUPLE */
            if ((rc = pop_mark(m, &from))) return rc;
            v = new_tuple_from(m, stack_at(m, from), m->sp - from);
            m->sp = from;
            rc = push(m, v);
            break;
        case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
            n = (size_t)(op - 0x84);
            if (m->sp < floor_sp(m) + n) return bad(m, "stack underflow");
            v = new_tuple_from(m, stack_at(m, m->sp - n), n);
            m->sp -= n;
            rc = push(m, v);
            break;
        case ']': rc = push(m, new_value(m->a, PK_LIST)); break;
        case 'l': /* LIST */
            if ((rc = pop_mark(m, &from))) return rc;
            v = new_tuple_from(m, stack_at(m, from), m->sp - from);
            if (v) v->kind = PK_LIST;
            m->sp = from;
            rc = push(m, v);
            break;
        case 'a': /* APPEND */
            if ((rc = pop(m, &w)) || (rc = top(m, &v))) return rc;
            if (v->kind != PK_LIST) return bad(m, "APPEND to something that is not a list");
            rc = seq_append(v, w);
            break;
        case 'e': /* APPENDS */
            if ((rc = pop_mark(m, &from))) return rc;
            if (from <= floor_sp(m) || m->stack[from - 1]->kind != PK_LIST)
                return bad(m, "APPENDS to something that is not a list");
            for (size_t i = from; i < m->sp && !rc; i++) rc = seq_append(m->stack[from - 1], m->stack[i]);
            m->sp = from;
            break;
        case '}': rc = push(m, new_value(m->a, PK_DICT)); break;
        case 'd': /* DICT */
            if ((rc = pop_mark(m, &from))) return rc;
            if ((m->sp - from) % 2) return bad(m, "DICT with an odd number of items");
            v = new_value(m->a, PK_DICT);
            if (!v) return nomem();
            for (size_t i = from; i < m->sp && !rc; i += 2) rc = dict_set(v, m->stack[i], m->stack[i + 1]);
            m->sp = from;
            if (!rc) rc = push(m, v);
            break;
        case 's': /* SETITEM */
            if ((rc = pop(m, &x)) || (rc = pop(m, &w)) || (rc = top(m, &v))) return rc;
            if (v->kind != PK_DICT) return bad(m, "SETITEM on something that is not a dict");
            rc = dict_set(v, w, x);
            break;
        case 'u': /* SETITEMS */
            if ((rc = pop_mark(m, &from))) return rc;
            if (from <= floor_sp(m) || m->stack[from - 1]->kind != PK_DICT)
                return bad(m, "SETITEMS on something that is not a dict");
            if ((m->sp - from) % 2) return bad(m, "SETITEMS with an odd number of items");
            for (size_t i = from; i < m->sp && !rc; i += 2) rc = dict_set(m->stack[from - 1], m->stack[i], m->stack[i + 1]);
            m->sp = from;
            break;
        case 'q': case 'r': /* BINPUT, LONG_BINPUT */
            if ((rc = need(m, op == 'q' ? 1 : 4, &p))) return rc;
            if ((rc = top(m, &v))) return rc;
            rc = memo_put(m, (size_t)le(p, op == 'q' ? 1 : 4), v);
            break;
        case 0x94: /* MEMOIZE */
            if ((rc = top(m, &v))) return rc;
            rc = memo_put(m, m->memo_next, v);
            break;
        case 'h': case 'j': /* BINGET, LONG_BINGET */
            if ((rc = need(m, op == 'h' ? 1 : 4, &p))) return rc;
            rc = memo_get(m, (size_t)le(p, op == 'h' ? 1 : 4));
            break;
        case 'c':   /* GLOBAL: "module\nname\n" */
        case 'i': { /* INST: the same two lines, then a call on the marked arguments */
            const uint8_t *mod = m->buf + m->pos, *e1 = memchr(mod, '\n', m->size - m->pos);
            if (!e1) return bad(m, op == 'c' ? "GLOBAL without a newline" : "INST without a newline");
            const uint8_t *nm = e1 + 1, *e2 = memchr(nm, '\n', (size_t)(m->buf + m->size - nm));
            if (!e2) return bad(m, op == 'c' ? "GLOBAL without a newline" : "INST without a newline");
            m->pos = (size_t)(e2 + 1 - m->buf);
            /* INST's class is named in the refusal like a GLOBAL's; even an allowed one is refused,
             * since torch.save never writes INST */
            rc = resolve_global(m, (const char *)mod, (size_t)(e1 - mod), (const char *)nm, (size_t)(e2 - nm));
            if (!rc && op == 'i') return bad(m, "INST (an object built by calling a class) is not supported");
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if ((rc = pop(m, &w)) || (rc = pop(m, &v))) return rc;
            if (v->kind != PK_STR || w->kind != PK_STR) return bad(m, "STACK_GLOBAL operands are not strings");
            rc = resolve_global(m, v->u.str.s, v->u.str.len, w->u.str.s, w->u.str.len);
            break;
        case 'R': rc = do_reduce(m); break;
        case 'Q': rc = do_persid(m); break;
        case 'b': rc = do_build(m); break;
        default:
            return ferc_set_error(FERC_ERR_UNSUPPORTED,
                                  "%s: pickle opcode 0x%02x (%s) at byte %zu is not supported: only the opcodes "
                                  "torch.save uses for state_dicts are accepted",
                                  m->what, op, opcode_name(op), m->op_pos);
        }
        if (rc) return rc;
    }
}

int pk_load(pk_arena *a, const uint8_t *buf, size_t size, const char *what, size_t *consumed, pk_value **out)
{
    vm m = {.a = a, .buf = buf, .size = size, .what = what ? what : "pickle"};
    *out = NULL;
    int rc = run(&m, out);
    if (!rc && consumed) *consumed = m.pos;
    free(m.stack);
    free(m.marks);
    free(m.memo);
    return rc;
}
