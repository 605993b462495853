/* BSATN products in C (docs/performance.md "Round 7 - nativecodec"): the host decodes every reducer's arguments and
 * encodes every row it stores, the client decodes every row it receives; with the Python codec each field is a
 * Python step (a closure call, a `struct` call, a class call for a `Timestamp`), and that was ~30% of the engine's
 * time per batched event.
 *
 * `Program(description, python_encoder, python_decoder)` compiles one product type, described by `bsatn.py` as nested
 * tuples (kind, ...), into a tree of nodes, once. Its `decode(data, offset)`, `encode_into(out, value)` and
 * `encode(value)` walk that tree with no Python step per field. They never decide an error themselves: whenever
 * the walk fails (short or malformed input, a value of another type than the exact builtin one, an integer out
 * of range, a string UTF-8 cannot encode), whatever was built is dropped and the Python codec (`python_encoder`,
 * `python_decoder`, the twin `bsatn.py` compiled for the same type) runs on the same arguments: it raises the
 * error (same type, same message) or answers. So what is accepted, the bytes and every error are the Python
 * codec's; the C walk only takes the cases it reads or writes exactly as Python does (property-tested equal).
 *
 * `encode_tx_record(tx, python_encoder)` writes the commit-log record of one committed transaction (`host/
 * tx_record.py`) the same way, with `encode_record_python` behind every failure: one record per commit is on every
 * call's path (docs/performance.md "Round 8 - percall").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum {
    K_BOOL = 0, K_I8, K_U8, K_I16, K_U16, K_I32, K_U32, K_I64, K_U64, K_F32, K_F64,
    K_I128, K_U128, K_I256, K_U256, K_STRING, K_BYTES, K_ARRAY, K_PRODUCT, K_OPTION, K_SUM,
    K_IDENTITY, K_CONNECTION_ID, K_TIMESTAMP, K_TIME_DURATION, K_COUNT
};

#define MAX_DEPTH 64
/* `bsatn.MAX_ZERO_SIZE_ELEMENTS`: the most values one input decodes from no bytes (arrays of zero-size elements,
 * each element weighted by the values it holds), one budget per top-level decode, shared by every nested array. */
#define MAX_ZERO_SIZE_ELEMENTS (1 << 20)

typedef struct Node {
    int kind;
    Py_ssize_t count;      /* children of a product or a sum */
    Py_ssize_t min_elem;   /* an array's smallest element encoding */
    Py_ssize_t weight;     /* an array's values per zero-byte element, charged to the budget when min_elem is 0 */
    struct Node **kids;
} Node;

/* The classes values are built from, set once by `configure`. */
static PyObject *sum_cls, *special_cls[4], *special_attr[4], *sum_tag_attr, *sum_value_attr;

static void node_free(Node *node)
{
    if (node == NULL)
        return;
    for (Py_ssize_t i = 0; i < node->count; i++)
        node_free(node->kids[i]);
    PyMem_Free(node->kids);
    PyMem_Free(node);
}

static Node *node_build(PyObject *desc, int depth)
{
    if (depth > MAX_DEPTH || !PyTuple_Check(desc) || PyTuple_GET_SIZE(desc) < 1) {
        PyErr_SetString(PyExc_ValueError, "bad BSATN program description");
        return NULL;
    }
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(desc, 0));
    if (kind < 0 || kind >= K_COUNT) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "bad BSATN program kind");
        return NULL;
    }
    Node *node = PyMem_Calloc(1, sizeof(Node));
    if (node == NULL)
        return (Node *)PyErr_NoMemory();
    node->kind = (int)kind;
    PyObject *kids = NULL;
    if (kind == K_ARRAY) {
        if (PyTuple_GET_SIZE(desc) != 4)
            goto bad;
        node->min_elem = PyLong_AsSsize_t(PyTuple_GET_ITEM(desc, 1));
        node->weight = PyLong_AsSsize_t(PyTuple_GET_ITEM(desc, 2));
        if (node->min_elem < 0 || node->weight < 1 || node->weight > MAX_ZERO_SIZE_ELEMENTS + 1)
            goto bad;
        kids = PyTuple_Pack(1, PyTuple_GET_ITEM(desc, 3));
    } else if (kind == K_OPTION) {
        if (PyTuple_GET_SIZE(desc) != 2)
            goto bad;
        kids = PyTuple_Pack(1, PyTuple_GET_ITEM(desc, 1));
    } else if (kind == K_PRODUCT || kind == K_SUM) {
        if (PyTuple_GET_SIZE(desc) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(desc, 1)))
            goto bad;
        if (kind == K_SUM && PyTuple_GET_SIZE(PyTuple_GET_ITEM(desc, 1)) > 256)
            goto bad;
        kids = Py_NewRef(PyTuple_GET_ITEM(desc, 1));
    } else if (PyTuple_GET_SIZE(desc) != 1) {
        goto bad;
    }
    if (kids == NULL) {
        if (PyErr_Occurred())
            goto fail;
        return node;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(kids);
    node->kids = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Node *));
    if (node->kids == NULL) {
        Py_DECREF(kids);
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        node->kids[i] = node_build(PyTuple_GET_ITEM(kids, i), depth + 1);
        node->count = i + 1;
        if (node->kids[i] == NULL) {
            Py_DECREF(kids);
            goto fail;
        }
    }
    node->count = n;
    Py_DECREF(kids);
    return node;
bad:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "bad BSATN program description");
fail:
    node_free(node);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------------- decoding */

typedef struct {
    const unsigned char *p;
    Py_ssize_t len;
    Py_ssize_t off;
    Py_ssize_t budget; /* what is left of the input's MAX_ZERO_SIZE_ELEMENTS */
} Reader;

static inline uint64_t load_le(const unsigned char *p, int size)
{
    uint64_t v = 0;
    for (int i = size - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A fast constructor for the special products: the object allocated and its one slot set, as the dataclass's own
 * `__init__` does (its `__post_init__` only checks a range every decoded value is in). */
static PyObject *make_special(int which, PyObject *raw)
{
    if (raw == NULL)
        return NULL;
    PyTypeObject *cls = (PyTypeObject *)special_cls[which];
    PyObject *obj = cls->tp_alloc(cls, 0);
    if (obj == NULL || Py_TYPE(special_attr[which])->tp_descr_set(special_attr[which], obj, raw) < 0) {
        Py_XDECREF(obj);
        Py_DECREF(raw);
        return NULL;
    }
    Py_DECREF(raw);
    return obj;
}

#define NEED(r, n) if ((n) > (r)->len - (r)->off) return NULL

static PyObject *decode_node(const Node *node, Reader *r)
{
    const unsigned char *p = r->p + r->off;
    switch (node->kind) {
    case K_BOOL:
        NEED(r, 1);
        if (p[0] > 1)
            return NULL;
        r->off += 1;
        return Py_NewRef(p[0] ? Py_True : Py_False);
    case K_I8: NEED(r, 1); r->off += 1; return PyLong_FromLong((int8_t)p[0]);
    case K_U8: NEED(r, 1); r->off += 1; return PyLong_FromLong(p[0]);
    case K_I16: NEED(r, 2); r->off += 2; return PyLong_FromLong((int16_t)load_le(p, 2));
    case K_U16: NEED(r, 2); r->off += 2; return PyLong_FromLong((long)load_le(p, 2));
    case K_I32: NEED(r, 4); r->off += 4; return PyLong_FromLong((int32_t)load_le(p, 4));
    case K_U32: NEED(r, 4); r->off += 4; return PyLong_FromUnsignedLong((unsigned long)load_le(p, 4));
    case K_I64: NEED(r, 8); r->off += 8; return PyLong_FromLongLong((int64_t)load_le(p, 8));
    case K_U64: NEED(r, 8); r->off += 8; return PyLong_FromUnsignedLongLong(load_le(p, 8));
    case K_F32: {
        NEED(r, 4);
        uint32_t bits = (uint32_t)load_le(p, 4);
        float f;
        memcpy(&f, &bits, 4);
        r->off += 4;
        return PyFloat_FromDouble(f);
    }
    case K_F64: {
        NEED(r, 8);
        uint64_t bits = load_le(p, 8);
        double d;
        memcpy(&d, &bits, 8);
        r->off += 8;
        return PyFloat_FromDouble(d);
    }
    case K_I128: case K_U128: case K_I256: case K_U256: {
        int size = node->kind <= K_U128 ? 16 : 32;
        NEED(r, size);
        r->off += size;
        return _PyLong_FromByteArray(p, (size_t)size, 1, node->kind == K_I128 || node->kind == K_I256);
    }
    case K_STRING: case K_BYTES: {
        NEED(r, 4);
        uint64_t size = load_le(p, 4); /* compared unsigned: no overflow where Py_ssize_t has 32 bits */
        if (size > (uint64_t)(r->len - r->off - 4))
            return NULL;
        Py_ssize_t n = (Py_ssize_t)size;
        r->off += 4 + n;
        if (node->kind == K_BYTES)
            return PyBytes_FromStringAndSize((const char *)p + 4, n);
        return PyUnicode_DecodeUTF8((const char *)p + 4, n, NULL);
    }
    case K_ARRAY: {
        NEED(r, 4);
        uint64_t length = load_le(p, 4);
        r->off += 4;
        uint64_t left = (uint64_t)(r->len - r->off);
        if (node->min_elem) {
            if (length > left / (uint64_t)node->min_elem)
                return NULL;
        } else {
            /* length * weight <= budget, without the product (weight >= 1) */
            if (length > (uint64_t)(r->budget / node->weight))
                return NULL;
            r->budget -= (Py_ssize_t)length * node->weight;
        }
        Py_ssize_t count = (Py_ssize_t)length;
        PyObject *items = PyList_New(count);
        if (items == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *item = decode_node(node->kids[0], r);
            if (item == NULL) {
                Py_DECREF(items);
                return NULL;
            }
            PyList_SET_ITEM(items, i, item);
        }
        return items;
    }
    case K_PRODUCT: {
        PyObject *values = PyTuple_New(node->count);
        if (values == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < node->count; i++) {
            PyObject *item = decode_node(node->kids[i], r);
            if (item == NULL) {
                Py_DECREF(values);
                return NULL;
            }
            PyTuple_SET_ITEM(values, i, item);
        }
        return values;
    }
    case K_OPTION:
        NEED(r, 1);
        if (p[0] == 1) {
            r->off += 1;
            Py_RETURN_NONE;
        }
        if (p[0] != 0)
            return NULL;
        r->off += 1;
        return decode_node(node->kids[0], r);
    case K_SUM: {
        NEED(r, 1);
        if (p[0] >= node->count)
            return NULL;
        r->off += 1;
        PyObject *payload = decode_node(node->kids[p[0]], r);
        if (payload == NULL)
            return NULL;
        PyObject *tag = PyLong_FromLong(p[0]);
        PyObject *value = tag == NULL ? NULL : PyObject_CallFunctionObjArgs(sum_cls, tag, payload, NULL);
        Py_XDECREF(tag);
        Py_DECREF(payload);
        return value;
    }
    case K_IDENTITY:
        NEED(r, 32);
        r->off += 32;
        return make_special(0, _PyLong_FromByteArray(p, 32, 1, 0));
    case K_CONNECTION_ID:
        NEED(r, 16);
        r->off += 16;
        return make_special(1, _PyLong_FromByteArray(p, 16, 1, 0));
    case K_TIMESTAMP: case K_TIME_DURATION:
        NEED(r, 8);
        r->off += 8;
        return make_special(node->kind - K_IDENTITY, PyLong_FromLongLong((int64_t)load_le(p, 8)));
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------------- encoding */

typedef struct {
    unsigned char *buf;
    Py_ssize_t len, cap;
    unsigned char small[512];
} Writer;

static int grow(Writer *w, Py_ssize_t more)
{
    if (w->len + more <= w->cap)
        return 0;
    Py_ssize_t cap = w->cap * 2;
    while (cap < w->len + more)
        cap *= 2;
    unsigned char *buf;
    if (w->buf == w->small) {
        buf = PyMem_Malloc((size_t)cap);
        if (buf != NULL)
            memcpy(buf, w->small, (size_t)w->len);
    } else {
        buf = PyMem_Realloc(w->buf, (size_t)cap);
    }
    if (buf == NULL)
        return -1;
    w->buf = buf;
    w->cap = cap;
    return 0;
}

static inline int put_le(Writer *w, uint64_t v, int size)
{
    if (grow(w, size) < 0)
        return -1;
    for (int i = 0; i < size; i++) {
        w->buf[w->len + i] = (unsigned char)(v & 0xFF);
        v >>= 8;
    }
    w->len += size;
    return 0;
}

static inline int put_raw(Writer *w, const void *data, Py_ssize_t n)
{
    if (n > 0xFFFFFFFFLL || put_le(w, (uint64_t)n, 4) < 0 || grow(w, n) < 0)
        return -1;
    memcpy(w->buf + w->len, data, (size_t)n);
    w->len += n;
    return 0;
}

static int put_wide(Writer *w, PyObject *v, int size, int is_signed)
{
    if (!PyLong_CheckExact(v) || grow(w, size) < 0)
        return -1;
#if PY_VERSION_HEX >= 0x030D0000
    if (_PyLong_AsByteArray((PyLongObject *)v, w->buf + w->len, (size_t)size, 1, is_signed, 1) < 0)
#else
    if (_PyLong_AsByteArray((PyLongObject *)v, w->buf + w->len, (size_t)size, 1, is_signed) < 0)
#endif
        return -1;
    w->len += size;
    return 0;
}

/* A tuple, or a subclass (a table's row class is a named tuple) that reads its items as a tuple does: what the
 * Python encoder's `len(value)` and unpacking would see. */
static inline int plain_tuple(PyObject *v)
{
    if (PyTuple_CheckExact(v))
        return 1;
    PyTypeObject *t = Py_TYPE(v);
    return PyTuple_Check(v) && t->tp_iter == PyTuple_Type.tp_iter && t->tp_as_sequence != NULL &&
           t->tp_as_sequence->sq_length == PyTuple_Type.tp_as_sequence->sq_length;
}

/* Only the exact builtin types (and tuples as above), in range; anything else fails, and the Python encoder
 * decides. */
static int encode_node(const Node *node, Writer *w, PyObject *v)
{
    switch (node->kind) {
    case K_BOOL:
        if (v != Py_True && v != Py_False)
            return -1;
        return put_le(w, v == Py_True, 1);
    case K_I8: case K_U8: case K_I16: case K_U16: case K_I32: case K_U32: case K_I64: {
        static const long long lo[] = {0, -128, 0, -32768, 0, -2147483648LL, 0, INT64_MIN};
        static const long long hi[] = {0, 127, 255, 32767, 65535, 2147483647LL, 4294967295LL, INT64_MAX};
        static const int size[] = {0, 1, 1, 2, 2, 4, 4, 8};
        if (!PyLong_CheckExact(v))
            return -1;
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred()) || x < lo[node->kind] || x > hi[node->kind])
            return -1;
        return put_le(w, (uint64_t)x, size[node->kind]);
    }
    case K_U64: {
        if (!PyLong_CheckExact(v))
            return -1;
        unsigned long long x = PyLong_AsUnsignedLongLong(v);
        if (x == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        return put_le(w, x, 8);
    }
    case K_F32: {
        if (!PyFloat_CheckExact(v))
            return -1;
        double d = PyFloat_AS_DOUBLE(v);
        float f = (float)d;
        if (isinf(f) && !isinf(d))
            return -1; /* struct raises OverflowError: the Python encoder says so */
        uint32_t bits;
        memcpy(&bits, &f, 4);
        return put_le(w, bits, 4);
    }
    case K_F64: {
        if (!PyFloat_CheckExact(v))
            return -1;
        double d = PyFloat_AS_DOUBLE(v);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        return put_le(w, bits, 8);
    }
    case K_I128: return put_wide(w, v, 16, 1);
    case K_U128: return put_wide(w, v, 16, 0);
    case K_I256: return put_wide(w, v, 32, 1);
    case K_U256: return put_wide(w, v, 32, 0);
    case K_STRING: {
        if (!PyUnicode_CheckExact(v) || PyUnicode_READY(v) < 0)
            return -1;
        if (PyUnicode_IS_ASCII(v))
            return put_raw(w, PyUnicode_DATA(v), PyUnicode_GET_LENGTH(v));
        /* not the cached UTF-8 form: that would stay on every stored row's string */
        PyObject *raw = PyUnicode_AsUTF8String(v);
        if (raw == NULL)
            return -1;
        int rc = put_raw(w, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw));
        Py_DECREF(raw);
        return rc;
    }
    case K_BYTES:
        if (!PyBytes_CheckExact(v))
            return -1;
        return put_raw(w, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    case K_ARRAY: {
        if (!PyList_CheckExact(v) && !PyTuple_CheckExact(v))
            return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        if (n > 0xFFFFFFFFLL || put_le(w, (uint64_t)n, 4) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            /* a list may change under an element's encode only through Python code, which none of these runs */
            if (i >= PySequence_Fast_GET_SIZE(v) || encode_node(node->kids[0], w, PySequence_Fast_GET_ITEM(v, i)) < 0)
                return -1;
        }
        return 0;
    }
    case K_PRODUCT:
        if (!plain_tuple(v) || PyTuple_GET_SIZE(v) != node->count)
            return -1;
        for (Py_ssize_t i = 0; i < node->count; i++)
            if (encode_node(node->kids[i], w, PyTuple_GET_ITEM(v, i)) < 0)
                return -1;
        return 0;
    case K_OPTION:
        if (v == Py_None)
            return put_le(w, 1, 1);
        if (put_le(w, 0, 1) < 0)
            return -1;
        return encode_node(node->kids[0], w, v);
    case K_SUM: {
        if ((PyObject *)Py_TYPE(v) != sum_cls)
            return -1;
        PyObject *tag = Py_TYPE(sum_tag_attr)->tp_descr_get(sum_tag_attr, v, sum_cls);
        if (tag == NULL)
            return -1;
        long t = PyLong_CheckExact(tag) ? PyLong_AsLong(tag) : -1;
        Py_DECREF(tag);
        if (t < 0 || t >= node->count || put_le(w, (uint64_t)t, 1) < 0)
            return -1;
        PyObject *payload = Py_TYPE(sum_value_attr)->tp_descr_get(sum_value_attr, v, sum_cls);
        if (payload == NULL)
            return -1;
        int rc = encode_node(node->kids[t], w, payload);
        Py_DECREF(payload);
        return rc;
    }
    case K_IDENTITY: case K_CONNECTION_ID: case K_TIMESTAMP: case K_TIME_DURATION: {
        int which = node->kind - K_IDENTITY;
        if ((PyObject *)Py_TYPE(v) != special_cls[which])
            return -1;
        PyObject *raw = Py_TYPE(special_attr[which])->tp_descr_get(special_attr[which], v, special_cls[which]);
        if (raw == NULL)
            return -1;
        int rc;
        if (which == 0)
            rc = put_wide(w, raw, 32, 0);
        else if (which == 1)
            rc = put_wide(w, raw, 16, 0);
        else {
            Node i64 = {K_I64, 0, 0, NULL};
            rc = encode_node(&i64, w, raw);
        }
        Py_DECREF(raw);
        return rc;
    }
    }
    return -1;
}

/* ----------------------------------------------------------------------------------------------------- Program */

typedef struct {
    PyObject_HEAD
    Node *root;
    PyObject *py_encoder;
    PyObject *py_decoder;
} Program;

static void program_dealloc(Program *self)
{
    node_free(self->root);
    Py_XDECREF(self->py_encoder);
    Py_XDECREF(self->py_decoder);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *program_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *desc, *enc, *dec;
    if (!PyArg_ParseTuple(args, "OOO:Program", &desc, &enc, &dec))
        return NULL;
    if (sum_cls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() was not called");
        return NULL;
    }
    Node *root = node_build(desc, 0);
    if (root == NULL)
        return NULL;
    Program *self = (Program *)type->tp_alloc(type, 0);
    if (self == NULL) {
        node_free(root);
        return NULL;
    }
    self->root = root;
    self->py_encoder = Py_NewRef(enc);
    self->py_decoder = Py_NewRef(dec);
    return (PyObject *)self;
}

/* A failed walk leaves its exception (if any) for the Python twin to replace: never one of C's own. */
static void drop_error(void)
{
    if (PyErr_Occurred())
        PyErr_Clear();
}

/* The budget a nested decode was handed (`bsatn.Budget`, a one-item list), or -1 when it is not one C reads as the
 * Python decoders would: then the Python twin decodes. */
static Py_ssize_t read_budget(PyObject *budget)
{
    if (!PyList_CheckExact(budget) || PyList_GET_SIZE(budget) != 1 || !PyLong_CheckExact(PyList_GET_ITEM(budget, 0)))
        return -1;
    Py_ssize_t left = PyLong_AsSsize_t(PyList_GET_ITEM(budget, 0));
    return left > MAX_ZERO_SIZE_ELEMENTS ? -1 : left; /* -1 also on an error, dropped below */
}

static PyObject *program_decode(Program *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decode(data, offset[, budget])");
        return NULL;
    }
    Py_ssize_t offset = PyLong_CheckExact(args[1]) ? PyLong_AsSsize_t(args[1]) : -1;
    /* a top-level decode starts a fresh budget; a nested one (a parent decoded in Python) goes on with its input's */
    int handed = nargs == 3 && args[2] != Py_None;
    Py_ssize_t budget = handed ? read_budget(args[2]) : MAX_ZERO_SIZE_ELEMENTS;
    Py_buffer view;
    if (offset >= 0 && budget >= 0 && PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) == 0) {
        PyObject *value = NULL;
        Reader r = {view.buf, view.len, offset, budget};
        /* bytes only: the Python decoder counts an array('I')'s or a cast memoryview's length in items */
        if (offset <= view.len && view.itemsize == 1)
            value = decode_node(self->root, &r);
        PyBuffer_Release(&view);
        if (value != NULL) {
            if (handed && r.budget != budget) { /* the parent goes on with what this value left */
                PyObject *left = PyLong_FromSsize_t(r.budget);
                if (left == NULL) { /* no memory for the int: not a decode error, nothing to hand to Python */
                    Py_DECREF(value);
                    return NULL;
                }
                PyList_SetItem(args[2], 0, left); /* an exact list of one item (read_budget): cannot fail */
            }
            PyObject *end = PyLong_FromSsize_t(r.off);
            PyObject *pair = end == NULL ? NULL : PyTuple_Pack(2, value, end);
            Py_DECREF(value);
            Py_XDECREF(end);
            return pair;
        }
    }
    drop_error();
    return PyObject_Vectorcall(self->py_decoder, args, (size_t)nargs, NULL);
}

static int write_out(PyObject *out, const Writer *w)
{
    Py_ssize_t start = PyByteArray_GET_SIZE(out);
    if (PyByteArray_Resize(out, start + w->len) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(out) + start, w->buf, (size_t)w->len);
    return 0;
}

static int walk(Program *self, PyObject *value, Writer *w)
{
    w->buf = w->small;
    w->len = 0;
    w->cap = sizeof(w->small);
    return encode_node(self->root, w, value);
}

static void writer_free(Writer *w)
{
    if (w->buf != w->small)
        PyMem_Free(w->buf);
}

static PyObject *program_encode_into(Program *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "encode_into(out, value)");
        return NULL;
    }
    if (PyByteArray_CheckExact(args[0])) {
        Writer w;
        int rc = walk(self, args[1], &w);
        if (rc == 0)
            rc = write_out(args[0], &w);
        writer_free(&w);
        if (rc == 0)
            Py_RETURN_NONE;
        drop_error();
    }
    return PyObject_Vectorcall(self->py_encoder, args, 2, NULL);
}

static PyObject *program_encode(Program *self, PyObject *value)
{
    Writer w;
    if (walk(self, value, &w) == 0) {
        PyObject *data = PyBytes_FromStringAndSize((const char *)w.buf, w.len);
        writer_free(&w);
        return data;
    }
    writer_free(&w);
    drop_error();
    PyObject *out = PyByteArray_FromStringAndSize(NULL, 0);
    if (out == NULL)
        return NULL;
    PyObject *args[2] = {out, value};
    PyObject *done = PyObject_Vectorcall(self->py_encoder, args, 2, NULL);
    if (done == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    Py_DECREF(done);
    PyObject *data = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(out), PyByteArray_GET_SIZE(out));
    Py_DECREF(out);
    return data;
}

static PyMethodDef program_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))program_decode, METH_FASTCALL,
     "decode(data, offset) -> (value, end): the Python decoder's answer or error"},
    {"encode_into", (PyCFunction)(void (*)(void))program_encode_into, METH_FASTCALL,
     "encode_into(out, value): append the value's bytes to the bytearray `out`, as the Python encoder would"},
    {"encode", (PyCFunction)program_encode, METH_O, "encode(value) -> bytes, as the Python encoder would"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "autopilot_sync.spacetime._bsatn.Program",
    .tp_basicsize = sizeof(Program),
    .tp_dealloc = (destructor)program_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One product type's compiled BSATN codec, with the Python codec behind it for every failure.",
    .tp_methods = program_methods,
    .tp_new = program_new,
};

static PyObject *configure(PyObject *module, PyObject *args)
{
    PyObject *sum, *classes[4];
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!:configure", &PyType_Type, &sum, &PyType_Type, &classes[0], &PyType_Type,
                          &classes[1], &PyType_Type, &classes[2], &PyType_Type, &classes[3]))
        return NULL;
    static const char *attrs[4] = {"value", "value", "micros", "micros"};
    PyObject *descrs[4], *tag, *value;
    for (int i = 0; i < 4; i++) {
        descrs[i] = PyDict_GetItemString(((PyTypeObject *)classes[i])->tp_dict, attrs[i]);
        if (descrs[i] == NULL || Py_TYPE(descrs[i])->tp_descr_get == NULL || Py_TYPE(descrs[i])->tp_descr_set == NULL) {
            PyErr_Format(PyExc_TypeError, "%s has no slot %s", ((PyTypeObject *)classes[i])->tp_name, attrs[i]);
            return NULL;
        }
    }
    tag = PyDict_GetItemString(((PyTypeObject *)sum)->tp_dict, "tag");
    value = PyDict_GetItemString(((PyTypeObject *)sum)->tp_dict, "value");
    if (tag == NULL || value == NULL || Py_TYPE(tag)->tp_descr_get == NULL || Py_TYPE(value)->tp_descr_get == NULL) {
        PyErr_SetString(PyExc_TypeError, "the sum class has no slots tag and value");
        return NULL;
    }
    Py_XSETREF(sum_cls, Py_NewRef(sum));
    Py_XSETREF(sum_tag_attr, Py_NewRef(tag));
    Py_XSETREF(sum_value_attr, Py_NewRef(value));
    for (int i = 0; i < 4; i++) {
        Py_XSETREF(special_cls[i], Py_NewRef(classes[i]));
        Py_XSETREF(special_attr[i], Py_NewRef(descrs[i]));
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------- the commit-log record */

/* Interned attribute names `encode_tx_record` reads, made once at import. */
static PyObject *attr_offset, *attr_timestamp, *attr_micros, *attr_reducer, *attr_caller, *attr_identity,
    *attr_value, *attr_changes, *attr_table, *attr_inserts, *attr_deletes;

static int put_str(Writer *w, PyObject *s)
{
    Py_ssize_t n;
    const char *utf8 = PyUnicode_CheckExact(s) ? PyUnicode_AsUTF8AndSize(s, &n) : NULL;
    return utf8 == NULL ? -1 : put_raw(w, utf8, n);
}

static int put_attr_le(Writer *w, PyObject *owner, PyObject *name, int is_signed)
{
    PyObject *v = PyObject_GetAttr(owner, name);
    if (v == NULL)
        return -1;
    int rc = -1;
    if (PyLong_CheckExact(v)) {
        if (is_signed) {
            long long x = PyLong_AsLongLong(v);
            if (!(x == -1 && PyErr_Occurred()))
                rc = put_le(w, (uint64_t)x, 8);
        } else {
            unsigned long long x = PyLong_AsUnsignedLongLong(v);
            if (!(x == (unsigned long long)-1 && PyErr_Occurred()))
                rc = put_le(w, (uint64_t)x, 8);
        }
    }
    Py_DECREF(v);
    return rc;
}

/* An array's length as a u32 (a longer array is the Python encoder's `struct.error`). */
static int put_count(Writer *w, Py_ssize_t count)
{
    return count > 0xFFFFFFFFLL ? -1 : put_le(w, (uint64_t)count, 4);
}

/* One table's rows, a tuple of (row bytes, row) pairs: the bytes of each as a BSATN byte string. */
static int put_rows(Writer *w, PyObject *rows)
{
    if (!PyTuple_CheckExact(rows))
        return -1;
    Py_ssize_t count = PyTuple_GET_SIZE(rows);
    if (put_count(w, count) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PyTuple_GET_ITEM(rows, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            return -1;
        PyObject *data = PyTuple_GET_ITEM(pair, 0);
        if (!PyBytes_CheckExact(data) || put_raw(w, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) < 0)
            return -1;
    }
    return 0;
}

static int put_change(Writer *w, PyObject *change)
{
    PyObject *table = PyObject_GetAttr(change, attr_table);
    int rc = table == NULL ? -1 : put_str(w, table);
    Py_XDECREF(table);
    for (int which = 0; which < 2 && rc == 0; which++) {
        PyObject *rows = PyObject_GetAttr(change, which == 0 ? attr_inserts : attr_deletes);
        rc = rows == NULL ? -1 : put_rows(w, rows);
        Py_XDECREF(rows);
    }
    return rc;
}

static int put_tx_record(Writer *w, PyObject *tx)
{
    PyObject *timestamp = NULL, *reducer = NULL, *caller = NULL, *identity = NULL, *value = NULL, *changes = NULL;
    int rc = -1;
    if (put_attr_le(w, tx, attr_offset, 0) < 0 || (timestamp = PyObject_GetAttr(tx, attr_timestamp)) == NULL ||
        put_attr_le(w, timestamp, attr_micros, 1) < 0 || (reducer = PyObject_GetAttr(tx, attr_reducer)) == NULL ||
        put_str(w, reducer) < 0 || (caller = PyObject_GetAttr(tx, attr_caller)) == NULL ||
        (identity = PyObject_GetAttr(caller, attr_identity)) == NULL ||
        (value = PyObject_GetAttr(identity, attr_value)) == NULL || put_wide(w, value, 32, 0) < 0 || (changes = PyObject_GetAttr(tx, attr_changes)) == NULL ||
        !PyTuple_CheckExact(changes) || put_count(w, PyTuple_GET_SIZE(changes)) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(changes); i++)
        if (put_change(w, PyTuple_GET_ITEM(changes, i)) < 0)
            goto done;
    rc = 0;
done:
    Py_XDECREF(timestamp);
    Py_XDECREF(reducer);
    Py_XDECREF(caller);
    Py_XDECREF(identity);
    Py_XDECREF(value);
    Py_XDECREF(changes);
    return rc;
}

/* `encode_tx_record(tx, python_encoder)`: the commit-log record of a committed transaction (`host/tx_record.py`:
 * its offset, timestamp, reducer, caller and per table the inserted and deleted rows' bytes), built here with no
 * Python step per row. Like a Program, it decides no error: whenever anything is not exactly what it reads (an
 * attribute missing, a value of another type, a number out of range, a string UTF-8 cannot encode), the Python
 * encoder runs on the same transaction and answers or raises. */
static PyObject *encode_tx_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "encode_tx_record(tx, python_encoder)");
        return NULL;
    }
    Writer w = {.buf = NULL, .len = 0, .cap = 0};
    w.buf = w.small;
    w.cap = sizeof(w.small);
    if (put_tx_record(&w, args[0]) == 0) {
        PyObject *data = PyBytes_FromStringAndSize((const char *)w.buf, w.len);
        writer_free(&w);
        return data;
    }
    writer_free(&w);
    drop_error();
    return PyObject_Vectorcall(args[1], args, 1, NULL);
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(SumValue, Identity, ConnectionId, Timestamp, TimeDuration): the classes values are built from"},
    {"encode_tx_record", (PyCFunction)(void (*)(void))encode_tx_record, METH_FASTCALL,
     "encode_tx_record(tx, python_encoder) -> bytes: a commit-log record, as the Python encoder would write it"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "autopilot_sync.spacetime._bsatn",
    "BSATN products compiled to C, the Python codec behind every failure (see bsatn.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__bsatn(void)
{
    if (PyType_Ready(&ProgramType) < 0)
        return NULL;
    struct { PyObject **slot; const char *name; } names[] = {
        {&attr_offset, "offset"}, {&attr_timestamp, "timestamp"}, {&attr_micros, "micros"},
        {&attr_reducer, "reducer"}, {&attr_caller, "caller"}, {&attr_identity, "identity"}, {&attr_value, "value"},
        {&attr_changes, "changes"}, {&attr_table, "table"}, {&attr_inserts, "inserts"}, {&attr_deletes, "deletes"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL)
            return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Program", (PyObject *)&ProgramType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
