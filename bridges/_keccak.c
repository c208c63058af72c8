/* bridges._keccak: Keccak-256 (the pre-SHA-3 padding Ethereum uses) for one message or a batch.
 *
 * keccak256(data) -> 32 bytes
 * keccak256_batch(data, count) -> count * 32 bytes: `data` (any C-contiguous buffer) holds `count`
 *     messages of equal length len(data) / count back to back; digest i is the hash of message i.
 *
 * Both release the GIL while hashing, so several Python threads can hash parts of one batch at once.
 * The permutation is Keccak-f[1600] (24 rounds, 64-bit lanes); rate 136 bytes, capacity 512 bits;
 * padding 0x01 ... 0x80. Lanes are read and written little-endian on every CPU. A batch is hashed
 * four messages at a time with the same round code on vectors of four lanes (GCC vector extensions;
 * on x86-64 an AVX2 clone is picked at load time when the CPU has it), the rest one by one; both give
 * the same bytes. Persists nothing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define RATE 136
#define DIGEST 32

static const uint64_t ROUND_CONSTANTS[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808AULL, 0x8000000080008000ULL,
    0x000000000000808BULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008AULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000AULL,
    0x000000008000808BULL, 0x800000000000008BULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800AULL, 0x800000008000000AULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

#define ROL(v, n) (((v) << (n)) | ((v) >> ((64 - (n)) & 63)))

/* One round on lanes a[x + 5y]: theta, then rho and pi into b, then chi back into a, then iota. */
#define THETA_RHO_PI_CHI_IOTA(T, rc)                                                          \
    do {                                                                                   \
        T c0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20];                                 \
        T c1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21];                                 \
        T c2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22];                                 \
        T c3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23];                                 \
        T c4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24];                                 \
        T d0 = c4 ^ ROL(c1, 1), d1 = c0 ^ ROL(c2, 1), d2 = c1 ^ ROL(c3, 1);         \
        T d3 = c2 ^ ROL(c4, 1), d4 = c3 ^ ROL(c0, 1);                               \
        /* b[y + 5((2x + 3y) mod 5)] = rol(a[x + 5y] ^ d[x], r[x][y]) */                  \
        b[0] = a[0] ^ d0;                b[10] = ROL(a[1] ^ d1, 1);                        \
        b[20] = ROL(a[2] ^ d2, 62);      b[5] = ROL(a[3] ^ d3, 28);                        \
        b[15] = ROL(a[4] ^ d4, 27);      b[16] = ROL(a[5] ^ d0, 36);                       \
        b[1] = ROL(a[6] ^ d1, 44);       b[11] = ROL(a[7] ^ d2, 6);                        \
        b[21] = ROL(a[8] ^ d3, 55);      b[6] = ROL(a[9] ^ d4, 20);                        \
        b[7] = ROL(a[10] ^ d0, 3);       b[17] = ROL(a[11] ^ d1, 10);                      \
        b[2] = ROL(a[12] ^ d2, 43);      b[12] = ROL(a[13] ^ d3, 25);                      \
        b[22] = ROL(a[14] ^ d4, 39);     b[23] = ROL(a[15] ^ d0, 41);                      \
        b[8] = ROL(a[16] ^ d1, 45);      b[18] = ROL(a[17] ^ d2, 15);                      \
        b[3] = ROL(a[18] ^ d3, 21);      b[13] = ROL(a[19] ^ d4, 8);                       \
        b[14] = ROL(a[20] ^ d0, 18);     b[24] = ROL(a[21] ^ d1, 2);                       \
        b[9] = ROL(a[22] ^ d2, 61);      b[19] = ROL(a[23] ^ d3, 56);                      \
        b[4] = ROL(a[24] ^ d4, 14);                                                        \
        for (int y = 0; y < 25; y += 5) {                                                  \
            a[y + 0] = b[y + 0] ^ (~b[y + 1] & b[y + 2]);                                  \
            a[y + 1] = b[y + 1] ^ (~b[y + 2] & b[y + 3]);                                  \
            a[y + 2] = b[y + 2] ^ (~b[y + 3] & b[y + 4]);                                  \
            a[y + 3] = b[y + 3] ^ (~b[y + 4] & b[y + 0]);                                  \
            a[y + 4] = b[y + 4] ^ (~b[y + 0] & b[y + 1]);                                  \
        }                                                                                  \
        a[0] ^= (rc);                                                                      \
    } while (0)

static void keccak_f1600(uint64_t a[25]) {
    uint64_t b[25];
    for (int round = 0; round < 24; round++) {
        THETA_RHO_PI_CHI_IOTA(uint64_t, ROUND_CONSTANTS[round]);
    }
}

/* Four independent states, lane i of state j in a[i][j]: the same rounds on 4-wide vectors. */
typedef uint64_t lanes4 __attribute__((vector_size(32)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define MULTIVERSION
#endif

MULTIVERSION static void keccak_f1600_x4(lanes4 a[25]) {
    lanes4 b[25];
    for (int round = 0; round < 24; round++) {
        THETA_RHO_PI_CHI_IOTA(lanes4, ROUND_CONSTANTS[round]);
    }
}

static inline uint64_t load_le64(const unsigned char *p) {
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) | ((uint64_t)p[3] << 24) |
           ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) | ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
}

static inline void store_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void keccak256(const unsigned char *msg, size_t len, unsigned char out[DIGEST]) {
    uint64_t a[25] = {0};
    while (len >= RATE) {
        for (int i = 0; i < RATE / 8; i++) {
            a[i] ^= load_le64(msg + 8 * i);
        }
        keccak_f1600(a);
        msg += RATE;
        len -= RATE;
    }
    unsigned char last[RATE];
    memset(last, 0, RATE);
    memcpy(last, msg, len);
    last[len] ^= 0x01;
    last[RATE - 1] ^= 0x80;
    for (int i = 0; i < RATE / 8; i++) {
        a[i] ^= load_le64(last + 8 * i);
    }
    keccak_f1600(a);
    for (int i = 0; i < DIGEST / 8; i++) {
        store_le64(out + 8 * i, a[i]);
    }
}

static void absorb_x4(lanes4 a[25], const unsigned char *const block[4]) {
    for (int i = 0; i < RATE / 8; i++) {
        lanes4 v = {load_le64(block[0] + 8 * i), load_le64(block[1] + 8 * i), load_le64(block[2] + 8 * i),
                    load_le64(block[3] + 8 * i)};
        a[i] ^= v;
    }
}

/* keccak256 of four messages of `len` bytes each (msg[j] -> out[j]). */
static void keccak256_x4(const unsigned char *const msg[4], size_t len, unsigned char *const out[4]) {
    lanes4 a[25];
    memset(a, 0, sizeof(a));
    size_t off = 0;
    for (; len - off >= RATE; off += RATE) {
        const unsigned char *block[4] = {msg[0] + off, msg[1] + off, msg[2] + off, msg[3] + off};
        absorb_x4(a, block);
        keccak_f1600_x4(a);
    }
    unsigned char last[4][RATE];
    for (int j = 0; j < 4; j++) {
        memset(last[j], 0, RATE);
        memcpy(last[j], msg[j] + off, len - off);
        last[j][len - off] ^= 0x01;
        last[j][RATE - 1] ^= 0x80;
    }
    const unsigned char *block[4] = {last[0], last[1], last[2], last[3]};
    absorb_x4(a, block);
    keccak_f1600_x4(a);
    for (int j = 0; j < 4; j++) {
        for (int i = 0; i < DIGEST / 8; i++) {
            store_le64(out[j] + 8 * i, a[i][j]);
        }
    }
}

static void keccak256_many(const unsigned char *msg, size_t len, Py_ssize_t count, unsigned char *out) {
    Py_ssize_t i = 0;
    for (; i + 4 <= count; i += 4) {
        const unsigned char *m[4] = {msg + (size_t)i * len, msg + (size_t)(i + 1) * len,
                                     msg + (size_t)(i + 2) * len, msg + (size_t)(i + 3) * len};
        unsigned char *o[4] = {out + (size_t)i * DIGEST, out + (size_t)(i + 1) * DIGEST,
                               out + (size_t)(i + 2) * DIGEST, out + (size_t)(i + 3) * DIGEST};
        keccak256_x4(m, len, o);
    }
    for (; i < count; i++) {
        keccak256(msg + (size_t)i * len, len, out + (size_t)i * DIGEST);
    }
}

static PyObject *py_keccak256(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, DIGEST);
    if (result != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        if (view.len >= 4096) {
            Py_BEGIN_ALLOW_THREADS
            keccak256((const unsigned char *)view.buf, (size_t)view.len, out);
            Py_END_ALLOW_THREADS
        } else {
            keccak256((const unsigned char *)view.buf, (size_t)view.len, out);
        }
    }
    PyBuffer_Release(&view);
    return result;
}

static PyObject *py_keccak256_batch(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*n:keccak256_batch", &view, &count)) {
        return NULL;
    }
    if (count < 0 || (count == 0 && view.len != 0) || (count > 0 && view.len % count != 0)) {
        PyErr_Format(PyExc_ValueError, "count: %zd does not divide the %zd-byte buffer into equal messages",
                     count, view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    if (count > PY_SSIZE_T_MAX / DIGEST) {
        PyErr_SetString(PyExc_ValueError, "count: too many messages");
        PyBuffer_Release(&view);
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, count * DIGEST);
    if (result != NULL && count > 0) {
        const unsigned char *msg = (const unsigned char *)view.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        size_t len = (size_t)(view.len / count);
        Py_BEGIN_ALLOW_THREADS
        keccak256_many(msg, len, count, out);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef METHODS[] = {
    {"keccak256", py_keccak256, METH_O, "keccak256(data) -> 32-byte digest"},
    {"keccak256_batch", py_keccak256_batch, METH_VARARGS,
     "keccak256_batch(data, count) -> count * 32 bytes: digests of count equal-length messages"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_keccak", "Keccak-256, single and batched (releases the GIL).", -1, METHODS,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__keccak(void) { return PyModule_Create(&MODULE); }
