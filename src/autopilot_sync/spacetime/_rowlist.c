/* Row-list work in C, where a Python step per row was most of a catch-up's CPU (docs/performance.md "Round 5 -
 * catchup2"): the SDK's row-list check and split (`check`), and the host's packing of a log partition's run of
 * rows into a row list (`pack_run`). Both have a Python twin that runs where this was not compiled.
 *
 * `check`: the row-list checker of `bsatn_check.py`, compiled: the same verdict, without a Python step per field.
 *
 * The Python SDK keeps a received row's bytes and decodes it only when read, yet no row may enter its cache unless
 * it would decode (docs/performance.md "Round 5 - catchup2"). `check(data, starts, layout)` walks each row of a
 * packed row list exactly as the product decoder does: `starts` holds each row's start offset in `data` (a row
 * ends where the next starts, the last at the end of `data`), `layout` the row type's fields in order, each a
 * fixed size (>= 0), -1 for a string (u32 length, then that many bytes of well-formed UTF-8) or -2 for a byte
 * array (u32 length, then that many bytes). When every row decodes (no field runs past its row, no byte is left
 * after the last field, every string is UTF-8 as Python's strict decoder reads it: no overlong forms, no
 * surrogates, nothing above U+10FFFF) it answers the rows split into one bytes object each, as
 * `BsatnRowList.rows()` would; else None. It raises only for arguments of the wrong type. The pure-Python checker
 * stays the reference; the property tests hold both to the decoder's verdict.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_FIELDS 256

/* Well-formed UTF-8 (Unicode 15, table 3-7): what Python's strict "utf-8" decoder accepts. */
static int utf8_ok(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t word;
            memcpy(&word, s + i, 8);
            if ((word & UINT64_C(0x8080808080808080)) == 0) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i += 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n)
                return 0;
            unsigned char c1 = s[i + 1];
            unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
            unsigned char hi = c == 0xED ? 0x9F : 0xBF;
            if (c1 < lo || c1 > hi || (s[i + 2] & 0xC0) != 0x80)
                return 0;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n)
                return 0;
            unsigned char c1 = s[i + 1];
            unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
            unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;
            if (c1 < lo || c1 > hi || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

static int row_ok(const unsigned char *data, Py_ssize_t pos, Py_ssize_t end, const long *layout, Py_ssize_t fields)
{
    for (Py_ssize_t f = 0; f < fields; f++) {
        long size = layout[f];
        if (size >= 0) {
            if (size > end - pos)
                return 0;
            pos += size;
            continue;
        }
        if (end - pos < 4)
            return 0;
        Py_ssize_t n = (Py_ssize_t)data[pos] | ((Py_ssize_t)data[pos + 1] << 8) | ((Py_ssize_t)data[pos + 2] << 16) |
                       ((Py_ssize_t)data[pos + 3] << 24);
        pos += 4;
        if (n > end - pos)
            return 0;
        if (size == -1 && !utf8_ok(data + pos, n))
            return 0;
        pos += n;
    }
    return pos == end;
}

static PyObject *check(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer view;
    PyObject *starts_arg, *layout_arg;
    if (!PyArg_ParseTuple(args, "y*OO:check", &view, &starts_arg, &layout_arg))
        return NULL;
    PyObject *result = NULL;
    PyObject *starts = NULL, *layout = NULL;
    long fields[MAX_FIELDS];
    /* a tuple, not PySequence_Fast's list: an item's `__index__` (Python code) may change a list it reads from */
    layout = PySequence_Tuple(layout_arg);
    if (layout == NULL)
        goto done;
    Py_ssize_t nfields = PyTuple_GET_SIZE(layout);
    if (nfields > MAX_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "layout has too many fields");
        goto done;
    }
    for (Py_ssize_t f = 0; f < nfields; f++) {
        fields[f] = PyLong_AsLong(PyTuple_GET_ITEM(layout, f));
        if (fields[f] == -1 && PyErr_Occurred())
            goto done;
        if (fields[f] < -2) {
            PyErr_SetString(PyExc_ValueError, "layout field sizes are >= -2");
            goto done;
        }
    }
    /* its items are read by PyLong_AsSsize_t, which runs no Python code (no `__index__`): the list cannot change */
    starts = PySequence_Fast(starts_arg, "starts must be a sequence of ints");
    if (starts == NULL)
        goto done;
    Py_ssize_t rows = PySequence_Fast_GET_SIZE(starts);
    PyObject **items = PySequence_Fast_ITEMS(starts);
    const unsigned char *data = (const unsigned char *)view.buf;
    Py_ssize_t size = view.len;
    PyObject *out = PyList_New(rows);
    if (out == NULL)
        goto done;
    Py_ssize_t previous = 0;
    for (Py_ssize_t r = 0; r < rows; r++) {
        Py_ssize_t start = PyLong_AsSsize_t(items[r]);
        Py_ssize_t end = r + 1 < rows ? PyLong_AsSsize_t(items[r + 1]) : size;
        if ((start == -1 || end == -1) && PyErr_Occurred()) {
            Py_DECREF(out);
            goto done;
        }
        if (start < previous || start > end || end > size || !row_ok(data, start, end, fields, nfields)) {
            Py_DECREF(out);
            Py_INCREF(Py_None);
            result = Py_None;
            goto done;
        }
        previous = start;
        PyObject *row = PyBytes_FromStringAndSize((const char *)data + start, end - start);
        if (row == NULL) {
            Py_DECREF(out);
            goto done;
        }
        PyList_SET_ITEM(out, r, row);
    }
    result = out;
done:
    Py_XDECREF(starts);
    Py_XDECREF(layout);
    PyBuffer_Release(&view);
    return result;
}

/* Item `k` of an array of u64 in native order, read at any alignment (a memoryview's slice need not be aligned). */
static inline uint64_t load_u64(const unsigned char *items, Py_ssize_t k)
{
    uint64_t v;
    memcpy(&v, items + 8 * k, 8);
    return v;
}

/* `pack_run(buf, prefix, seqs, begins, finishes)`: the row list of rows `prefix + u64le(seqs[k]) +
 * buf[begins[k]:finishes[k]]` (the host's `logtable.RowRun`; `seqs`, `begins`, `finishes` are `array('Q')` of one
 * length). Answers (data, row length) when every row has the same length, else (data, offsets): each row's start
 * in data, as `BsatnRowList.from_rows` chooses its size hint. ValueError for a span outside `buf`. */
static PyObject *pack_run(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer buf, prefix, seqs, begins, finishes;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*:pack_run", &buf, &prefix, &seqs, &begins, &finishes))
        return NULL;
    PyObject *result = NULL, *data = NULL, *offsets = NULL;
    Py_ssize_t count = seqs.len / 8;
    if (seqs.len % 8 || begins.len != seqs.len || finishes.len != seqs.len || seqs.itemsize != 8 ||
        begins.itemsize != 8 || finishes.itemsize != 8) {
        PyErr_SetString(PyExc_ValueError, "seqs, begins and finishes must be array('Q') of one length");
        goto done;
    }
    const unsigned char *seq = seqs.buf, *begin = begins.buf, *finish = finishes.buf;
    Py_ssize_t head = prefix.len + 8, total = 0;
    int same = 1;
    uint64_t first = count ? load_u64(finish, 0) - load_u64(begin, 0) : 0;
    /* no row is longer than the buffer: only where count rows of that length could pass PY_SSIZE_T_MAX is the
     * total checked row by row */
    int may_overflow = count && (uint64_t)head + (uint64_t)buf.len > (uint64_t)PY_SSIZE_T_MAX / (uint64_t)count;
    for (Py_ssize_t k = 0; k < count; k++) {
        uint64_t from = load_u64(begin, k), to = load_u64(finish, k);
        if (from > to || to > (uint64_t)buf.len) {
            PyErr_SetString(PyExc_ValueError, "a row span lies outside the buffer");
            goto done;
        }
        same = same && to - from == first;
        if (may_overflow && (Py_ssize_t)(to - from) > PY_SSIZE_T_MAX - head - total) {
            PyErr_SetString(PyExc_ValueError, "the run's rows add up to more bytes than a bytes object holds");
            goto done;
        }
        total += head + (Py_ssize_t)(to - from);
    }
    data = PyBytes_FromStringAndSize(NULL, total);
    if (data == NULL)
        goto done;
    char *out = PyBytes_AS_STRING(data);
    const char *source = (const char *)buf.buf;
    if (!same && (offsets = PyTuple_New(count)) == NULL)
        goto done;
    Py_ssize_t at = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        if (offsets != NULL) {
            PyObject *start = PyLong_FromSsize_t(at);
            if (start == NULL)
                goto done;
            PyTuple_SET_ITEM(offsets, k, start);
        }
        memcpy(out + at, prefix.buf, prefix.len);
        uint64_t number = load_u64(seq, k), from = load_u64(begin, k);
        for (int b = 0; b < 8; b++)
            out[at + prefix.len + b] = (char)((number >> (8 * b)) & 0xFF);
        at += head;
        Py_ssize_t length = (Py_ssize_t)(load_u64(finish, k) - from);
        memcpy(out + at, source + from, length);
        at += length;
    }
    if (offsets != NULL)
        result = PyTuple_Pack(2, data, offsets);
    else
        result = Py_BuildValue("(On)", data, count ? head + (Py_ssize_t)first : (Py_ssize_t)0);
done:
    Py_XDECREF(data);
    Py_XDECREF(offsets);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&seqs);
    PyBuffer_Release(&begins);
    PyBuffer_Release(&finishes);
    return result;
}

static PyMethodDef methods[] = {
    {"check", check, METH_VARARGS,
     "check(data, starts, layout) -> list[bytes] | None: the rows split when every row decodes, else None."},
    {"pack_run", pack_run, METH_VARARGS,
     "pack_run(buf, prefix, seqs, begins, finishes) -> (data, row size | offsets): a log run as a row list."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "autopilot_sync.spacetime._rowlist",
    "Row lists in C: the SDK's check and split, the host's packing of a log run (see the source).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rowlist(void)
{
    return PyModule_Create(&module);
}
