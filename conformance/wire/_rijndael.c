/* Compiled rounds for conformance.wire.rijndael: the same T-table cipher as the
 * pure-Python fallback, which stays the reference. The tables come from Python
 * (set_tables) so both paths share one definition; round-key schedules arrive as
 * packed native uint32 words, already tweaked for V4/V6 by the caller. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_ROUNDS 14

static uint32_t TE[4][256], TD[4][256];
static uint8_t SBOX[256], INV_SBOX[256];
static int tables_ready;

static inline uint32_t load_be(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void store_be(uint8_t *p, uint32_t w)
{
    p[0] = (uint8_t)(w >> 24);
    p[1] = (uint8_t)(w >> 16);
    p[2] = (uint8_t)(w >> 8);
    p[3] = (uint8_t)w;
}

static void encrypt_block(const uint32_t *rk, int rounds, const uint8_t in[16], uint8_t out[16])
{
    uint32_t s0 = load_be(in) ^ rk[0], s1 = load_be(in + 4) ^ rk[1];
    uint32_t s2 = load_be(in + 8) ^ rk[2], s3 = load_be(in + 12) ^ rk[3];
    for (int r = 1; r < rounds; r++) {
        rk += 4;
        uint32_t t0 = TE[0][s0 >> 24] ^ TE[1][(s1 >> 16) & 255] ^ TE[2][(s2 >> 8) & 255] ^ TE[3][s3 & 255] ^ rk[0];
        uint32_t t1 = TE[0][s1 >> 24] ^ TE[1][(s2 >> 16) & 255] ^ TE[2][(s3 >> 8) & 255] ^ TE[3][s0 & 255] ^ rk[1];
        uint32_t t2 = TE[0][s2 >> 24] ^ TE[1][(s3 >> 16) & 255] ^ TE[2][(s0 >> 8) & 255] ^ TE[3][s1 & 255] ^ rk[2];
        uint32_t t3 = TE[0][s3 >> 24] ^ TE[1][(s0 >> 16) & 255] ^ TE[2][(s1 >> 8) & 255] ^ TE[3][s2 & 255] ^ rk[3];
        s0 = t0; s1 = t1; s2 = t2; s3 = t3;
    }
    rk += 4;
    const uint8_t *sb = SBOX;
    store_be(out, (((uint32_t)sb[s0 >> 24] << 24) | ((uint32_t)sb[(s1 >> 16) & 255] << 16)
                   | ((uint32_t)sb[(s2 >> 8) & 255] << 8) | sb[s3 & 255]) ^ rk[0]);
    store_be(out + 4, (((uint32_t)sb[s1 >> 24] << 24) | ((uint32_t)sb[(s2 >> 16) & 255] << 16)
                       | ((uint32_t)sb[(s3 >> 8) & 255] << 8) | sb[s0 & 255]) ^ rk[1]);
    store_be(out + 8, (((uint32_t)sb[s2 >> 24] << 24) | ((uint32_t)sb[(s3 >> 16) & 255] << 16)
                       | ((uint32_t)sb[(s0 >> 8) & 255] << 8) | sb[s1 & 255]) ^ rk[2]);
    store_be(out + 12, (((uint32_t)sb[s3 >> 24] << 24) | ((uint32_t)sb[(s0 >> 16) & 255] << 16)
                        | ((uint32_t)sb[(s1 >> 8) & 255] << 8) | sb[s2 & 255]) ^ rk[3]);
}

/* rk is the equivalent-inverse-cipher schedule (reversed, InvMixColumns on inner keys). */
static void decrypt_block(const uint32_t *rk, int rounds, const uint8_t in[16], uint8_t out[16])
{
    uint32_t s0 = load_be(in) ^ rk[0], s1 = load_be(in + 4) ^ rk[1];
    uint32_t s2 = load_be(in + 8) ^ rk[2], s3 = load_be(in + 12) ^ rk[3];
    for (int r = 1; r < rounds; r++) {
        rk += 4;
        uint32_t t0 = TD[0][s0 >> 24] ^ TD[1][(s3 >> 16) & 255] ^ TD[2][(s2 >> 8) & 255] ^ TD[3][s1 & 255] ^ rk[0];
        uint32_t t1 = TD[0][s1 >> 24] ^ TD[1][(s0 >> 16) & 255] ^ TD[2][(s3 >> 8) & 255] ^ TD[3][s2 & 255] ^ rk[1];
        uint32_t t2 = TD[0][s2 >> 24] ^ TD[1][(s1 >> 16) & 255] ^ TD[2][(s0 >> 8) & 255] ^ TD[3][s3 & 255] ^ rk[2];
        uint32_t t3 = TD[0][s3 >> 24] ^ TD[1][(s2 >> 16) & 255] ^ TD[2][(s1 >> 8) & 255] ^ TD[3][s0 & 255] ^ rk[3];
        s0 = t0; s1 = t1; s2 = t2; s3 = t3;
    }
    rk += 4;
    const uint8_t *ib = INV_SBOX;
    store_be(out, (((uint32_t)ib[s0 >> 24] << 24) | ((uint32_t)ib[(s3 >> 16) & 255] << 16)
                   | ((uint32_t)ib[(s2 >> 8) & 255] << 8) | ib[s1 & 255]) ^ rk[0]);
    store_be(out + 4, (((uint32_t)ib[s1 >> 24] << 24) | ((uint32_t)ib[(s0 >> 16) & 255] << 16)
                       | ((uint32_t)ib[(s3 >> 8) & 255] << 8) | ib[s2 & 255]) ^ rk[1]);
    store_be(out + 8, (((uint32_t)ib[s2 >> 24] << 24) | ((uint32_t)ib[(s1 >> 16) & 255] << 16)
                       | ((uint32_t)ib[(s0 >> 8) & 255] << 8) | ib[s3 & 255]) ^ rk[2]);
    store_be(out + 12, (((uint32_t)ib[s3 >> 24] << 24) | ((uint32_t)ib[(s2 >> 16) & 255] << 16)
                        | ((uint32_t)ib[(s1 >> 8) & 255] << 8) | ib[s0 & 255]) ^ rk[3]);
}

static PyObject *set_tables(PyObject *self, PyObject *args)
{
    Py_buffer te, td, sbox, inv;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &te, &td, &sbox, &inv))
        return NULL;
    PyObject *result = NULL;
    if (te.len != sizeof TE || td.len != sizeof TD || sbox.len != 256 || inv.len != 256) {
        PyErr_SetString(PyExc_ValueError, "tables: 4x256 uint32 words each for TE and TD, 256 bytes per S-box");
    } else {
        memcpy(TE, te.buf, sizeof TE);
        memcpy(TD, td.buf, sizeof TD);
        memcpy(SBOX, sbox.buf, 256);
        memcpy(INV_SBOX, inv.buf, 256);
        tables_ready = 1;
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&te);
    PyBuffer_Release(&td);
    PyBuffer_Release(&sbox);
    PyBuffer_Release(&inv);
    return result;
}

typedef void (*block_fn)(const uint32_t *, int, const uint8_t *, uint8_t *);

/* Checks shared by every entry point; returns the round count or -1 with an exception set. */
static int check(const Py_buffer *schedule, const Py_buffer *data)
{
    if (!tables_ready) {
        PyErr_SetString(PyExc_RuntimeError, "set_tables() was never called");
        return -1;
    }
    Py_ssize_t words = schedule->len / 4;
    if (schedule->len % 16 || words < 8 || words > 4 * (MAX_ROUNDS + 1)) {
        PyErr_SetString(PyExc_ValueError, "schedule: 2 to 15 round keys of four uint32 words");
        return -1;
    }
    if (data->len % 16) {
        PyErr_SetString(PyExc_ValueError, "input must be whole 16-byte blocks");
        return -1;
    }
    return (int)(words / 4 - 1);
}

static PyObject *run(PyObject *args, block_fn fn, int cbc, int encrypt)
{
    Py_buffer schedule, iv = {0}, data;
    int ok = cbc ? PyArg_ParseTuple(args, "y*y*y*", &schedule, &iv, &data)
                 : PyArg_ParseTuple(args, "y*y*", &schedule, &data);
    if (!ok)
        return NULL;
    PyObject *out = NULL;
    int rounds = check(&schedule, &data);
    if (rounds > 0 && cbc && iv.len != 16) {
        PyErr_SetString(PyExc_ValueError, "IV must be 16 bytes");
        rounds = -1;
    }
    if (rounds > 0) {
        out = PyBytes_FromStringAndSize(NULL, data.len);
    }
    if (out != NULL) {
        uint32_t rk[4 * (MAX_ROUNDS + 1)];
        memcpy(rk, schedule.buf, schedule.len);  /* aligned copy: the buffer may not be */
        const uint8_t *in = data.buf;
        uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
        uint8_t chain[16], block[16];
        if (cbc)
            memcpy(chain, iv.buf, 16);
        for (Py_ssize_t off = 0; off < data.len; off += 16) {
            if (!cbc) {
                fn(rk, rounds, in + off, dst + off);
            } else if (encrypt) {
                for (int i = 0; i < 16; i++)
                    block[i] = in[off + i] ^ chain[i];
                fn(rk, rounds, block, dst + off);
                memcpy(chain, dst + off, 16);
            } else {
                fn(rk, rounds, in + off, block);
                for (int i = 0; i < 16; i++)
                    dst[off + i] = block[i] ^ chain[i];
                memcpy(chain, in + off, 16);
            }
        }
    }
    PyBuffer_Release(&schedule);
    if (cbc)
        PyBuffer_Release(&iv);
    PyBuffer_Release(&data);
    return out;
}

static PyObject *ecb_encrypt(PyObject *self, PyObject *args) { return run(args, encrypt_block, 0, 1); }
static PyObject *ecb_decrypt(PyObject *self, PyObject *args) { return run(args, decrypt_block, 0, 0); }
static PyObject *cbc_encrypt(PyObject *self, PyObject *args) { return run(args, encrypt_block, 1, 1); }
static PyObject *cbc_decrypt(PyObject *self, PyObject *args) { return run(args, decrypt_block, 1, 0); }

static PyMethodDef methods[] = {
    {"set_tables", set_tables, METH_VARARGS, "set_tables(te, td, sbox, inv_sbox): the tables rijndael.py built"},
    {"ecb_encrypt", ecb_encrypt, METH_VARARGS, "ecb_encrypt(schedule, data) -> bytes"},
    {"ecb_decrypt", ecb_decrypt, METH_VARARGS, "ecb_decrypt(inverse_schedule, data) -> bytes"},
    {"cbc_encrypt", cbc_encrypt, METH_VARARGS, "cbc_encrypt(schedule, iv, data) -> bytes"},
    {"cbc_decrypt", cbc_decrypt, METH_VARARGS, "cbc_decrypt(inverse_schedule, iv, data) -> bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rijndael", "Compiled Rijndael rounds (see rijndael.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__rijndael(void)
{
    return PyModule_Create(&module);
}
