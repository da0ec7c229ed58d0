/* One pass over a float32 CPU tensor: Σx, Σx², min, max and the count of NaN/±Inf
 * (moments_f32); a histogram's counts (histogram_f32); both and a saturation count, the
 * histogram of a strided sample, in one call (summary_f32: what a hook records of a tensor);
 * Σx² and Σ(x - y)² (sumsq_f32); and, batched, a logged step's parameter gradients with their
 * weight norms (grads_f32) and its updates (sqdiffs_f32), one call for all the parameters;
 * the attention sample of a call without a mask: logits, their max and entropy (attention_f32).
 *
 * torch has no CPU kernel that gives these together: aminmax, sum and a dot product are
 * three reads of the tensor (reducers.moments). This reads it once. The sums are
 * accumulated in float64, which holds every float32 square exactly in range
 * (2⁻²⁹⁸ <= x² <= 2²⁵⁶), so no overflow or underflow check is needed; error about
 * n · 2⁻⁵³ relative. min/max follow torch.aminmax: NaN when the tensor holds a NaN.
 *
 * Optional: gradprobe falls back to the torch ops when this module is not built
 * (reducers.FUSED is None). Built by setup.py; plain C, no torch headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16

typedef struct {
    double s, q;
    float lo, hi;
} acc_t;

/* The body, instantiated per instruction set below: LANES independent accumulators so the
 * compiler can vectorise without reassociating one long chain of additions. Comparisons skip
 * NaN (min/max then describe the non-NaN values; the caller checks for NaN after). */
#define MOMENTS_BODY(SQ)                                                              \
    {                                                                                 \
        double s[LANES] = {0}, q[LANES] = {0};                                        \
        float lo[LANES], hi[LANES];                                                   \
        for (int j = 0; j < LANES; j++) {                                             \
            lo[j] = INFINITY;                                                         \
            hi[j] = -INFINITY;                                                        \
        }                                                                             \
        int64_t i = 0;                                                                \
        for (; i + LANES <= n; i += LANES) {                                          \
            for (int j = 0; j < LANES; j++) {                                         \
                float v = x[i + j];                                                   \
                double d = (double)v;                                                 \
                s[j] += d;                                                            \
                q[j] = SQ(d, q[j]);                                                   \
                lo[j] = v < lo[j] ? v : lo[j];                                        \
                hi[j] = v > hi[j] ? v : hi[j];                                        \
            }                                                                         \
        }                                                                             \
        acc_t a = {0.0, 0.0, INFINITY, -INFINITY};                                    \
        for (; i < n; i++) {                                                          \
            float v = x[i];                                                           \
            double d = (double)v;                                                     \
            a.s += d;                                                                 \
            a.q += d * d;                                                             \
            a.lo = v < a.lo ? v : a.lo;                                               \
            a.hi = v > a.hi ? v : a.hi;                                               \
        }                                                                             \
        for (int j = 0; j < LANES; j++) {                                             \
            a.s += s[j];                                                              \
            a.q += q[j];                                                              \
            a.lo = lo[j] < a.lo ? lo[j] : a.lo;                                       \
            a.hi = hi[j] > a.hi ? hi[j] : a.hi;                                       \
        }                                                                             \
        return a;                                                                     \
    }

/* q + d·d: d·d of a float32 value is exact in float64 (48 significant bits), so a fused
 * multiply-add rounds once, as the separate multiply and add do: the same sums, fewer
 * instructions (used where the CPU has FMA). */
#define MUL_ADD(d, q) ((q) + (d) * (d))
#define FMA_ADD(d, q) __builtin_fma((d), (d), (q))

static acc_t moments_plain(const float *restrict x, int64_t n) MOMENTS_BODY(MUL_ADD)

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_AVX2_CLONE 1
__attribute__((target("avx2,fma"))) static acc_t moments_avx2(const float *restrict x,
                                                               int64_t n) MOMENTS_BODY(FMA_ADD)
#endif

static int use_avx2 = 0;

/* One thread: splitting a large tensor over pthreads was measured slower on a 2-thread
 * workload (torch's OpenMP workers spin on the cores after each parallel region). */
static acc_t moments_one(const float *x, int64_t n) {
#ifdef HAVE_AVX2_CLONE
    return use_avx2 ? moments_avx2(x, n) : moments_plain(x, n);
#else
    return moments_plain(x, n);
#endif
}

/* moments_one, and the count of NaN/±Inf in *bad (read again only when the sums say there is
 * one); min and max become NaN when a NaN is there, as torch.aminmax. */
static acc_t moments_counted(const float *x, int64_t n, long long *bad) {
    acc_t a = moments_one(x, n);
    if (!isfinite(a.s) || !isfinite(a.q)) { /* NaN/±Inf somewhere: count them (rare) */
        int nan = 0;
        for (int64_t i = 0; i < n; i++) {
            if (!isfinite(x[i])) {
                (*bad)++;
                nan |= isnan(x[i]);
            }
        }
        if (nan)
            a.lo = a.hi = NAN;
    }
    return a;
}

static PyObject *moments_f32(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "moments_f32(address, n)");
        return NULL;
    }
    uintptr_t addr = (uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    int64_t n = (int64_t)PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (n <= 0) {
        PyErr_SetString(PyExc_ValueError, "moments_f32: n must be positive");
        return NULL;
    }
    const float *x = (const float *)addr;
    acc_t a;
    long long bad = 0;
    Py_BEGIN_ALLOW_THREADS
    a = moments_counted(x, n, &bad);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(ddddL)", a.s, a.q, (double)a.lo, (double)a.hi, bad);
}

/* histogram_f32(address, n, bins, r, counts_address) -> (zeros, nan, posinf, neginf)
 *
 * The counts of reducers.histogram in one pass, bit for bit: with s = (float)(bins/2 / r),
 * a value x goes to bin ceil(x·s) clamped to [-bins/2, bins/2 + 1], plus bins/2 (float32
 * arithmetic, as torch's mul/ceil/clamp of float32 tensors); NaN/±Inf are binned as 0 and
 * counted; `zeros` counts the values that are 0 or non-finite. counts: bins + 2 int64,
 * added to (the caller zeroes them). Blocks of HBLOCK values: their bin indices first (AVX2
 * intrinsics where the CPU has them, the scalar loop otherwise), then counted into 4
 * interleaved tables (no chain of increments of one counter). */
#define HBLOCK 512

/* The bin index of each of m <= HBLOCK values; returns the zero count, adds the non-finite
 * count to *nb. */
#define DEFINE_HIST(NAME, ATTR)                                                         \
    ATTR static int NAME##_index(const float *restrict b, int m, float sc, float lo,    \
                                 float hi, int32_t half, int32_t *restrict idx,        \
                                 int *restrict nb) {                                   \
        int nz = 0, bad = 0;                                                           \
        for (int j = 0; j < m; j++) {                                                  \
            float v = b[j];                                                            \
            int fin = fabsf(v) <= FLT_MAX; /* false for NaN and ±Inf */                \
            v = fin ? v : 0.0f;                                                        \
            bad += !fin;                                                               \
            nz += v == 0.0f;                                                           \
            float z = ceilf(v * sc);                                                   \
            z = z < lo ? lo : z;                                                       \
            z = z > hi ? hi : z;                                                       \
            idx[j] = (int32_t)z + half;                                                \
        }                                                                              \
        *nb += bad;                                                                    \
        return nz;                                                                     \
    }

DEFINE_HIST(hist_plain, )

/* Counts of n values, their indices from INDEX, block by block */
#define DEFINE_COUNT(NAME, INDEX, ATTR)                                                 \
    ATTR static long long NAME(const float *restrict x, int64_t n, float sc, float lo,  \
                               float hi, int32_t half, int64_t *t[4], long long *bad) { \
        int32_t idx[HBLOCK];                                                           \
        long long zeros = 0;                                                           \
        int nb = 0;                                                                    \
        for (int64_t at = 0; at < n; at += HBLOCK) {                                   \
            int m = (int)(n - at < HBLOCK ? n - at : HBLOCK);                          \
            zeros += INDEX(x + at, m, sc, lo, hi, half, idx, &nb);                     \
            int j = 0;                                                                 \
            for (; j + 4 <= m; j += 4) {                                               \
                t[0][idx[j]]++;                                                        \
                t[1][idx[j + 1]]++;                                                    \
                t[2][idx[j + 2]]++;                                                    \
                t[3][idx[j + 3]]++;                                                    \
            }                                                                          \
            for (; j < m; j++)                                                         \
                t[0][idx[j]]++;                                                        \
        }                                                                              \
        *bad = nb;                                                                     \
        return zeros;                                                                  \
    }

#ifdef HAVE_AVX2_CLONE
#include <immintrin.h>
/* The same index loop, 8 values at a time (gcc does not vectorise the scalar one): every
 * step is the float32 operation of the scalar loop, so the bins are the same. */
__attribute__((target("avx2,fma"))) static int hist_avx2_index(const float *restrict b, int m,
                                                                float sc, float lo, float hi,
                                                                int32_t half,
                                                                int32_t *restrict idx,
                                                                int *restrict nb) {
    const __m256 vsc = _mm256_set1_ps(sc), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const __m256 big = _mm256_set1_ps(FLT_MAX), zero = _mm256_setzero_ps();
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i vhalf = _mm256_set1_epi32(half);
    int nz = 0, bad = 0, j = 0;
    for (; j + 8 <= m; j += 8) {
        __m256 v = _mm256_loadu_ps(b + j);
        __m256 fin = _mm256_cmp_ps(_mm256_andnot_ps(sign, v), big, _CMP_LE_OQ);
        v = _mm256_and_ps(v, fin); /* NaN/±Inf -> 0 */
        bad += 8 - __builtin_popcount(_mm256_movemask_ps(fin));
        nz += __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_EQ_OQ)));
        __m256 z = _mm256_ceil_ps(_mm256_mul_ps(v, vsc));
        z = _mm256_min_ps(_mm256_max_ps(z, vlo), vhi);
        __m256i k = _mm256_add_epi32(_mm256_cvttps_epi32(z), vhalf);
        _mm256_storeu_si256((__m256i *)(idx + j), k);
    }
    int rest = 0;
    nz += hist_plain_index(b + j, m - j, sc, lo, hi, half, idx + j, &rest);
    *nb += bad + rest;
    return nz;
}
#endif

DEFINE_COUNT(hist_plain, hist_plain_index, )
#ifdef HAVE_AVX2_CLONE
DEFINE_COUNT(hist_avx2, hist_avx2_index, __attribute__((target("avx2,fma"))))
#endif

static PyObject *histogram_f32(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "histogram_f32(address, n, bins, r, counts_address)");
        return NULL;
    }
    uintptr_t addr = (uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    int64_t n = (int64_t)PyLong_AsLongLong(args[1]);
    long bins = PyLong_AsLong(args[2]);
    double r = PyFloat_AsDouble(args[3]);
    uintptr_t caddr = (uintptr_t)PyLong_AsUnsignedLongLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (n < 0 || bins < 2 || bins % 2 || bins > (1 << 20) || !(r > 0) || !isfinite(r)) {
        PyErr_SetString(PyExc_ValueError,
                        "histogram_f32: needs n >= 0, even bins in [2, 2^20], 0 < r < inf");
        return NULL;
    }
    const float *x = (const float *)addr;
    int64_t *counts = (int64_t *)caddr;
    const int32_t half = (int32_t)(bins / 2);
    const float sc = (float)((double)half / r), lo = (float)-half, hi = (float)(half + 1);
    const size_t width = (size_t)bins + 2;
    int64_t *extra = calloc(3 * width, sizeof(int64_t));
    if (extra == NULL)
        return PyErr_NoMemory();
    int64_t *t[4] = {counts, extra, extra + width, extra + 2 * width};
    long long zeros, bad = 0, nan = 0, posinf = 0, neginf = 0;
    Py_BEGIN_ALLOW_THREADS
#ifdef HAVE_AVX2_CLONE
    zeros = use_avx2 ? hist_avx2(x, n, sc, lo, hi, half, t, &bad)
                     : hist_plain(x, n, sc, lo, hi, half, t, &bad);
#else
    zeros = hist_plain(x, n, sc, lo, hi, half, t, &bad);
#endif
    for (size_t i = 0; i < width; i++)
        counts[i] += extra[i] + extra[width + i] + extra[2 * width + i];
    if (bad) { /* NaN/±Inf (rare): which */
        for (int64_t i = 0; i < n; i++) {
            nan += isnan(x[i]) != 0;
            posinf += x[i] == INFINITY;
            neginf += x[i] == -INFINITY;
        }
    }
    Py_END_ALLOW_THREADS
    free(extra);
    return Py_BuildValue("(LLLL)", zeros, nan, posinf, neginf);
}

/* The histogram counts of a strided view of x (sizes/strides in values, the last stride 1),
 * row by row; returns the zero count, adds the non-finite count to *bad. Adjacent dims that
 * are contiguous with each other are merged into longer rows first. */
static long long hist_view(const float *x, int nd, int64_t *sz, int64_t *st, float sc,
                           float lo, float hi, int32_t half, int64_t *t[4], long long *bad) {
    while (nd > 1 && st[nd - 2] == sz[nd - 1] * st[nd - 1]) { /* merge the last two dims */
        sz[nd - 2] *= sz[nd - 1];
        st[nd - 2] = st[nd - 1];
        nd--;
    }
    int64_t rows = 1, idx[8] = {0}, off = 0, row = sz[nd - 1];
    for (int d = 0; d < nd - 1; d++)
        rows *= sz[d];
    long long zeros = 0;
    for (int64_t k = 0; k < rows; k++) {
        long long b = 0;
#ifdef HAVE_AVX2_CLONE
        zeros += use_avx2 ? hist_avx2(x + off, row, sc, lo, hi, half, t, &b)
                          : hist_plain(x + off, row, sc, lo, hi, half, t, &b);
#else
        zeros += hist_plain(x + off, row, sc, lo, hi, half, t, &b);
#endif
        *bad += b;
        for (int d = nd - 2; d >= 0; d--) { /* the next row: an odometer over the outer dims */
            off += st[d];
            if (++idx[d] < sz[d])
                break;
            off -= st[d] * sz[d];
            idx[d] = 0;
        }
    }
    return zeros;
}

/* The count of values with |x - c| >= h (float32 arithmetic, as reducers.saturated_count),
 * in int32 lanes over blocks short enough not to overflow them (so gcc vectorises it). */
#define SBLOCK ((int64_t)1 << 24)
#define SAT_BODY                                                                      \
    {                                                                                 \
        long long total = 0;                                                          \
        for (int64_t at = 0; at < n; at += SBLOCK) {                                  \
            const int64_t m = n - at < SBLOCK ? n - at : SBLOCK;                      \
            const float *b = x + at;                                                  \
            int32_t k = 0;                                                            \
            for (int64_t i = 0; i < m; i++)                                           \
                k += fabsf(b[i] - c) >= h;                                            \
            total += k;                                                               \
        }                                                                             \
        return total;                                                                 \
    }

static long long sat_plain(const float *restrict x, int64_t n, float c, float h) SAT_BODY
#ifdef HAVE_AVX2_CLONE
__attribute__((target("avx2,fma"))) static long long sat_avx2(const float *restrict x,
                                                               int64_t n, float c,
                                                               float h) SAT_BODY
#endif

static long long sat_count(const float *x, int64_t n, float c, float h) {
#ifdef HAVE_AVX2_CLONE
    if (use_avx2)
        return sat_avx2(x, n, c, h);
#endif
    return sat_plain(x, n, c, h);
}

#define WIDEN (1.0 + 1.0 / 1024.0) /* reducers.WIDEN */

/* summary_f32(address, n, sat_c, sat_h, bins, r, pow2, sizes, strides, counts_address)
 *   -> (Σx, Σx², min, max, n_nonfinite, saturated, r, zeros)
 *
 * Everything a hook records of one float32 CPU tensor, in one call: moments_f32 of its n
 * contiguous values; with sat_h >= 0 the count of values with |x - sat_c| >= sat_h (float32
 * arithmetic, as reducers.saturated_count: it passes h (1 - 2 tol)); with bins > 0 and no
 * NaN/Inf in x, histogram_f32's counts (added to counts_address) of the view given by sizes
 * and strides (in values from address, the last stride 1; None: all n values), on [-r, r]
 * with r > 0 as given, or for r == 0 reducers.histogram's automatic range from the min and
 * max of all n values (max|x| (1 + 2^-10), rounded up to a power of two when pow2). The r
 * returned is the one used; 0 when no histogram was taken (bins == 0, or NaN/Inf in x: the
 * caller bins those its own way). */
static PyObject *summary_f32(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "summary_f32(address, n, sat_c, sat_h, bins, r, pow2, "
                                         "sizes, strides, counts_address)");
        return NULL;
    }
    uintptr_t addr = (uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    int64_t n = (int64_t)PyLong_AsLongLong(args[1]);
    double sat_c = PyFloat_AsDouble(args[2]), sat_h = PyFloat_AsDouble(args[3]);
    long bins = PyLong_AsLong(args[4]);
    double r = PyFloat_AsDouble(args[5]);
    int pow2 = PyObject_IsTrue(args[6]);
    uintptr_t caddr = (uintptr_t)PyLong_AsUnsignedLongLong(args[9]);
    if (PyErr_Occurred())
        return NULL;
    if (n <= 0 || bins < 0 || bins % 2 || bins > (1 << 20) || !(r >= 0) || !isfinite(r) ||
        (bins > 0 && caddr == 0)) {
        PyErr_SetString(PyExc_ValueError, "summary_f32: needs n > 0, bins 0 or even in "
                                          "[2, 2^20] with a counts address, 0 <= r < inf");
        return NULL;
    }
    int nd = 1;
    int64_t sz[8] = {n}, st[8] = {1};
    if (args[7] != Py_None) {
        if (!PyTuple_Check(args[7]) || !PyTuple_Check(args[8]) ||
            PyTuple_GET_SIZE(args[7]) != PyTuple_GET_SIZE(args[8]) ||
            PyTuple_GET_SIZE(args[7]) < 1 || PyTuple_GET_SIZE(args[7]) > 8) {
            PyErr_SetString(PyExc_ValueError, "summary_f32: sizes and strides: tuples of 1-8");
            return NULL;
        }
        nd = (int)PyTuple_GET_SIZE(args[7]);
        int64_t last = 0; /* the view's last value must lie inside the n values */
        for (int d = 0; d < nd; d++) {
            sz[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(args[7], d));
            st[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(args[8], d));
            if (PyErr_Occurred())
                return NULL;
            if (sz[d] < 1 || st[d] < 0 || sz[d] > n || st[d] > n) { /* no overflow below */
                PyErr_SetString(PyExc_ValueError, "summary_f32: sizes >= 1, strides >= 0");
                return NULL;
            }
            last += (sz[d] - 1) * st[d];
        }
        if (st[nd - 1] != 1 || last >= n) {
            PyErr_SetString(PyExc_ValueError,
                            "summary_f32: the view needs a last stride of 1 and must lie "
                            "inside the n values");
            return NULL;
        }
    }
    const float *x = (const float *)addr;
    const int32_t half = (int32_t)(bins / 2);
    const size_t width = (size_t)bins + 2;
    int64_t *extra = NULL;
    if (bins > 0 && (extra = calloc(3 * width, sizeof(int64_t))) == NULL)
        return PyErr_NoMemory();
    acc_t a;
    long long bad = 0, sat = 0, zeros = 0;
    Py_BEGIN_ALLOW_THREADS
    a = moments_counted(x, n, &bad);
    if (sat_h >= 0)
        sat = sat_count(x, n, (float)sat_c, (float)sat_h);
    if (bins > 0 && bad == 0) {
        if (r == 0) {
            double m = -(double)a.lo > (double)a.hi ? -(double)a.lo : (double)a.hi;
            r = (m > 0 ? m : 1.0) * WIDEN;
            if (pow2)
                r = ldexp(1.0, (int)ceil(log2(r)));
        }
        int64_t *t[4] = {(int64_t *)caddr, extra, extra + width, extra + 2 * width};
        const float sc = (float)((double)half / r), lo = (float)-half, hi = (float)(half + 1);
        long long b = 0;
        zeros = hist_view(x, nd, sz, st, sc, lo, hi, half, t, &b);
        for (size_t i = 0; i < width; i++)
            t[0][i] += extra[i] + extra[width + i] + extra[2 * width + i];
    } else {
        r = 0.0;
    }
    Py_END_ALLOW_THREADS
    free(extra);
    return Py_BuildValue("(ddddLLdL)", a.s, a.q, (double)a.lo, (double)a.hi, bad, sat, r,
                         zeros);
}

/* Σ v² in float64 over LANES accumulators, v = V(i) (x[i], or x[i] - y[i] in float64),
 * instantiated per instruction set and per form (a branch in the loop would stop gcc from
 * vectorising it). */
#define SUMSQ_BODY(V, SQ)                                                             \
    {                                                                                 \
        double q[LANES] = {0};                                                        \
        int64_t i = 0;                                                                \
        for (; i + LANES <= n; i += LANES) {                                          \
            for (int j = 0; j < LANES; j++) {                                         \
                double d = V(i + j);                                                  \
                q[j] = SQ(d, q[j]);                                                   \
            }                                                                         \
        }                                                                             \
        double a = 0.0;                                                               \
        for (; i < n; i++) {                                                          \
            double d = V(i);                                                          \
            a += d * d;                                                               \
        }                                                                             \
        for (int j = 0; j < LANES; j++)                                               \
            a += q[j];                                                                \
        return a;                                                                     \
    }
#define ONE(k) ((double)x[k])
#define DIFF(k) ((double)x[k] - (double)y[k])

static double sumsq_plain(const float *restrict x, int64_t n) SUMSQ_BODY(ONE, MUL_ADD)
static double sqdiff_plain(const float *restrict x, const float *restrict y,
                           int64_t n) SUMSQ_BODY(DIFF, MUL_ADD)
#ifdef HAVE_AVX2_CLONE
__attribute__((target("avx2,fma"))) static double sumsq_avx2(const float *restrict x,
                                                             int64_t n) SUMSQ_BODY(ONE, FMA_ADD)
__attribute__((target("avx2,fma"))) static double sqdiff_avx2(const float *restrict x,
                                                              const float *restrict y,
                                                              int64_t n) SUMSQ_BODY(DIFF, MUL_ADD)
#endif

static double sumsq_one(const float *x, int64_t n) {
#ifdef HAVE_AVX2_CLONE
    if (use_avx2)
        return sumsq_avx2(x, n);
#endif
    return sumsq_plain(x, n);
}

static double sqdiff_one(const float *x, const float *y, int64_t n) {
#ifdef HAVE_AVX2_CLONE
    if (use_avx2)
        return sqdiff_avx2(x, y, n);
#endif
    return sqdiff_plain(x, y, n);
}

/* sumsq_f32(address, n[, other_address]) -> Σx² (Σ(x - y)² with other_address), float64
 * sums of float64 differences and squares: exact over the whole float32 range (weight norms,
 * and ‖w - w_prev‖ without writing the difference anywhere). NaN/Inf give NaN/Inf. */
static PyObject *sumsq_f32(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "sumsq_f32(address, n[, other_address])");
        return NULL;
    }
    uintptr_t addr = (uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    int64_t n = (int64_t)PyLong_AsLongLong(args[1]);
    uintptr_t other = nargs == 3 ? (uintptr_t)PyLong_AsUnsignedLongLong(args[2]) : 0;
    if (PyErr_Occurred())
        return NULL;
    if (n <= 0 || addr == 0 || (nargs == 3 && other == 0)) {
        PyErr_SetString(PyExc_ValueError, "sumsq_f32: n must be positive, addresses nonzero");
        return NULL;
    }
    const float *x = (const float *)addr, *y = (const float *)other;
    double q;
    Py_BEGIN_ALLOW_THREADS
    q = y ? sqdiff_one(x, y, n) : sumsq_one(x, n);
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(q);
}

/* The arguments of a batched call, (spec_address, k, out_address): spec holds k rows of
 * `width` int64 whose first two are a data address and n; a row whose address is 0 or whose
 * n is not positive is refused (a ValueError naming `name`). Returns 0, or -1 with an
 * exception set. */
static int batch_args(PyObject *const *args, Py_ssize_t nargs, const char *name, int width,
                      const int64_t **spec, int64_t *k, double **out) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s(spec_address, k, out_address)", name);
        return -1;
    }
    uintptr_t saddr = (uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    *k = (int64_t)PyLong_AsLongLong(args[1]);
    uintptr_t oaddr = (uintptr_t)PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred())
        return -1;
    if (*k < 0 || (*k > 0 && (saddr == 0 || oaddr == 0))) {
        PyErr_Format(PyExc_ValueError, "%s: k >= 0 and nonzero addresses", name);
        return -1;
    }
    *spec = (const int64_t *)saddr;
    *out = (double *)oaddr;
    for (int64_t r = 0; r < *k; r++) {
        if ((*spec)[width * r] == 0 || (*spec)[width * r + 1] <= 0) {
            PyErr_Format(PyExc_ValueError, "%s: each row needs a data address and n > 0", name);
            return -1;
        }
    }
    return 0;
}

/* grads_f32(spec_address, k, out_address): k parameters of a logged step in one call. spec:
 * k rows of 4 int64 (gradient address, n, weight address or 0, snapshot address or 0); out:
 * k rows of 6 float64 (Σg, Σg², min g, max g, n_nonfinite of g as moments_f32, then Σw² of
 * the weights as sumsq_f32, NaN without a weight address). With a snapshot address the n
 * weights are first copied there (w_{t-1} of the update ratio). All float32, contiguous. */
static PyObject *grads_f32(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const int64_t *spec;
    int64_t k;
    double *out;
    if (batch_args(args, nargs, "grads_f32", 4, &spec, &k, &out) < 0)
        return NULL;
    for (int64_t r = 0; r < k; r++) {
        if (spec[4 * r + 3] && !spec[4 * r + 2]) {
            PyErr_SetString(PyExc_ValueError, "grads_f32: a snapshot needs a weight address");
            return NULL;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (int64_t r = 0; r < k; r++) {
        const float *g = (const float *)(uintptr_t)spec[4 * r];
        const int64_t n = spec[4 * r + 1];
        const float *w = (const float *)(uintptr_t)spec[4 * r + 2];
        float *snap = (float *)(uintptr_t)spec[4 * r + 3];
        long long bad = 0;
        acc_t a = moments_counted(g, n, &bad);
        double *o = out + 6 * r;
        o[0] = a.s, o[1] = a.q, o[2] = a.lo, o[3] = a.hi, o[4] = (double)bad;
        if (snap)
            memcpy(snap, w, (size_t)n * sizeof(float));
        o[5] = w ? sumsq_one(w, n) : NAN;
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* sqdiffs_f32(spec_address, k, out_address): Σ(x - y)² of k pairs (‖w - w_prev‖² of a
 * step's parameters) in one call. spec: k rows of 3 int64 (x address, n, y address); out: k
 * float64, as sumsq_f32 with other_address. */
static PyObject *sqdiffs_f32(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const int64_t *spec;
    int64_t k;
    double *out;
    if (batch_args(args, nargs, "sqdiffs_f32", 3, &spec, &k, &out) < 0)
        return NULL;
    for (int64_t r = 0; r < k; r++) {
        if (spec[3 * r + 2] == 0) {
            PyErr_SetString(PyExc_ValueError, "sqdiffs_f32: each row needs a second address");
            return NULL;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (int64_t r = 0; r < k; r++) {
        const float *x = (const float *)(uintptr_t)spec[3 * r];
        const float *y = (const float *)(uintptr_t)spec[3 * r + 2];
        out[r] = sqdiff_one(x, y, spec[3 * r + 1]);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* The logits z_j = scale · q_i·k_j of one query row against its nk keys into z; returns
 * their max (NaN if one is NaN). The dot in float32 as torch's matmul (8 lanes, which the
 * compiler vectorises), the logits in float64. */
static double row_logits(const float *qr, int64_t qsE, const float *kh, int64_t ksS,
                         int64_t ksE, int64_t nk, int64_t E, double scale, double *z) {
    double m = -INFINITY;
    int nan = 0;
    for (int64_t j = 0; j < nk; j++) {
        const float *kr = kh + j * ksS;
        float a[8] = {0};
        int64_t e = 0;
        if (qsE == 1 && ksE == 1) {
            for (; e + 8 <= E; e += 8)
                for (int l = 0; l < 8; l++)
                    a[l] += qr[e + l] * kr[e + l];
        }
        for (; e < E; e++)
            a[0] += qr[e * qsE] * kr[e * ksE];
        double v = (double)(((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])));
        v *= scale;
        z[j] = v;
        nan |= isnan(v);
        m = v > m ? v : m;
    }
    return nan ? NAN : m;
}

/* attention_f32(q_address, q_strides, k_address, k_strides, heads, kv_heads, rows, S, E,
 * scale, causal) -> (max logit, Σ entropy, min over heads of the mean entropy): the
 * attention sample of probe/_attention.py without a mask, in one call. q: float32 at
 * q_address with strides (head, query, feature) in elements, k likewise (head, key,
 * feature); heads[h] and kv_heads[h] the query and key head of sampled head h, rows the
 * sampled query positions. Per row i: z_j = scale · q_i·k_j over its keys (all S, or
 * j <= i when causal: top-left aligned, as SDPA), p = softmax(z), entropy
 * H = logsumexp(z) - Σ p_j z_j (nats). Float64 throughout. */
static PyObject *attention_f32(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "attention_f32(q_address, q_strides, k_address, "
                                         "k_strides, heads, kv_heads, rows, S, E, scale, "
                                         "causal)");
        return NULL;
    }
    uintptr_t qaddr = (uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    uintptr_t kaddr = (uintptr_t)PyLong_AsUnsignedLongLong(args[2]);
    int64_t S = (int64_t)PyLong_AsLongLong(args[7]), E = (int64_t)PyLong_AsLongLong(args[8]);
    double scale = PyFloat_AsDouble(args[9]);
    int causal = PyObject_IsTrue(args[10]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *tuples[5] = {args[1], args[3], args[4], args[5], args[6]};
    for (int t = 0; t < 5; t++) {
        if (!PyTuple_Check(tuples[t])) {
            PyErr_SetString(PyExc_TypeError, "attention_f32: strides, heads and rows: tuples");
            return NULL;
        }
    }
    Py_ssize_t h = PyTuple_GET_SIZE(args[4]), m = PyTuple_GET_SIZE(args[6]);
    if (qaddr == 0 || kaddr == 0 || S <= 0 || E <= 0 || h <= 0 || m <= 0 ||
        PyTuple_GET_SIZE(args[5]) != h || PyTuple_GET_SIZE(args[1]) != 3 ||
        PyTuple_GET_SIZE(args[3]) != 3 || h > 4096 || m > 65536) {
        PyErr_SetString(PyExc_ValueError, "attention_f32: nonzero addresses, 3 strides each, "
                                          "S, E >= 1, 1-4096 heads (as many kv heads), "
                                          "1-65536 rows");
        return NULL;
    }
    int64_t qs[3], ks[3];
    for (int d = 0; d < 3; d++) {
        qs[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(args[1], d));
        ks[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(args[3], d));
    }
    int64_t *idx = malloc((size_t)(2 * h + m) * sizeof(int64_t));
    double *z = malloc((size_t)S * sizeof(double));
    if (idx == NULL || z == NULL) {
        free(idx);
        free(z);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < h; i++) {
        idx[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(args[4], i));
        idx[h + i] = PyLong_AsLongLong(PyTuple_GET_ITEM(args[5], i));
    }
    for (Py_ssize_t i = 0; i < m; i++)
        idx[2 * h + i] = PyLong_AsLongLong(PyTuple_GET_ITEM(args[6], i));
    int bad = PyErr_Occurred() != NULL;
    for (Py_ssize_t i = 0; i < 2 * h + m && !bad; i++)
        bad = idx[i] < 0;
    for (int d = 0; d < 3 && !bad; d++)
        bad = qs[d] < 0 || ks[d] < 0;
    if (bad) {
        free(idx);
        free(z);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "attention_f32: strides and indices >= 0");
        return NULL;
    }
    const float *q = (const float *)qaddr, *k = (const float *)kaddr;
    double max_logit = -INFINITY, total = 0.0, min_head = INFINITY;
    int nan = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t a = 0; a < h; a++) {
        const float *qh = q + idx[a] * qs[0], *kh = k + idx[h + a] * ks[0];
        double head = 0.0;
        for (Py_ssize_t r = 0; r < m; r++) {
            int64_t i = idx[2 * h + r];
            int64_t nk = causal ? (i + 1 < S ? i + 1 : S) : S;
            double zmax = row_logits(qh + i * qs[1], qs[2], kh, ks[1], ks[2], nk, E, scale, z);
            double sum = 0.0, pz = 0.0;
            for (int64_t j = 0; j < nk; j++) {
                double ex = exp(z[j] - zmax);
                sum += ex;
                pz += ex * z[j];
            }
            head += (zmax + log(sum)) - pz / sum;
            nan |= isnan(zmax);
            max_logit = zmax > max_logit ? zmax : max_logit;
        }
        total += head;
        double mean = head / (double)m;
        nan |= isnan(mean);
        min_head = mean < min_head ? mean : min_head;
    }
    Py_END_ALLOW_THREADS
    free(idx);
    free(z);
    if (nan) /* as torch's amax/amin: NaN in, NaN out */
        max_logit = min_head = NAN;
    return Py_BuildValue("(ddd)", max_logit, total, min_head);
}

static PyMethodDef methods[] = {
    {"moments_f32", (PyCFunction)(void (*)(void))moments_f32, METH_FASTCALL,
     "moments_f32(address, n) -> (Σx, Σx², min, max, n_nonfinite) of n contiguous float32 "
     "values at address (a CPU tensor's data_ptr()), in one pass, sums in float64."},
    {"histogram_f32", (PyCFunction)(void (*)(void))histogram_f32, METH_FASTCALL,
     "histogram_f32(address, n, bins, r, counts_address) -> (zeros, nan, posinf, neginf): "
     "reducers.histogram's counts of n contiguous float32 values in one pass."},
    {"sumsq_f32", (PyCFunction)(void (*)(void))sumsq_f32, METH_FASTCALL,
     "sumsq_f32(address, n[, other_address]) -> Σx² (or Σ(x - y)²) of n contiguous float32 "
     "values, in float64, in one pass."},
    {"summary_f32", (PyCFunction)(void (*)(void))summary_f32, METH_FASTCALL,
     "summary_f32(address, n, sat_c, sat_h, bins, r, pow2, sizes, strides, counts_address) "
     "-> (Σx, Σx², min, max, n_nonfinite, saturated, r, zeros): moments, saturation count "
     "and the histogram of a strided sample of one float32 tensor, in one call."},
    {"grads_f32", (PyCFunction)(void (*)(void))grads_f32, METH_FASTCALL,
     "grads_f32(spec_address, k, out_address): the moments of k parameter gradients and the "
     "Σw² of their weights (copying the weights to a snapshot first where asked), in one "
     "call."},
    {"sqdiffs_f32", (PyCFunction)(void (*)(void))sqdiffs_f32, METH_FASTCALL,
     "sqdiffs_f32(spec_address, k, out_address): Σ(x - y)² of k pairs of float32 arrays."},
    {"attention_f32", (PyCFunction)(void (*)(void))attention_f32, METH_FASTCALL,
     "attention_f32(q_address, q_strides, k_address, k_strides, heads, kv_heads, rows, S, E, "
     "scale, causal) -> (max logit, Σ entropy, min per-head mean entropy) of an attention "
     "sample without a mask (float32 q and k, float64 sums)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fused", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fused(void) {
#ifdef HAVE_AVX2_CLONE
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "AVX2", use_avx2) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
