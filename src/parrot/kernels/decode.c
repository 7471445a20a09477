/* parrot's decode kernels: the work of one generated token, in plain C.
 *
 * Decoding one token multiplies a few activation rows by every weight matrix once, so
 * the time goes into reading weights from memory, not into arithmetic; and the rest of
 * a layer (norms, RoPE, the cache write, attention over the cache) is many small steps
 * whose fixed cost in PyTorch exceeds their arithmetic. Here:
 *   matvec_int8       int8 weights (a scale per row) x float32 activations: equals the
 *                     float matmul with the dequantized weights up to float rounding;
 *   matvec_int4       4-bit weights (scale and offset per group of 32) x activations
 *                     rounded to int8 per group, llama.cpp's Q4 x Q8 scheme;
 *   rms_norm_rows     RMSNorm of a few rows;
 *   decode_attention  RoPE, cache write and attention for one new token per row.
 * The loops are written so that `gcc -O3 -march=native -fassociative-math` vectorizes
 * them (AVX2 on x86, NEON on ARM); the int4 dot product uses AVX2 intrinsics where the
 * CPU has them. OpenMP splits the work across `threads` threads of PyTorch's own OpenMP
 * runtime (the same libgomp: one thread pool).
 *
 * Matrix shapes: x (rows, in) float32, y (rows, out) float32, all contiguous; `in` is a
 * multiple of GROUP. Every function returns 0, or -1 when it could not allocate its
 * scratch memory (allocated once per call, never inside the parallel loops); the Python
 * wrappers check every argument before calling. Each weight row is read once and used for every activation row, so
 * a batch of decode rows costs little more than one.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define GROUP 32  /* inputs per int4 group, and the width of the int8 partial sums */

/* a . b; built with -fassociative-math, so the compiler may split the sum into vector
 * lanes (the order of float additions is the only thing that changes). */
static inline float dot(const float *a, const float *b, int64_t n) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* y[m, o] = scale[o] * sum_k q[o, k] * x[m, k]          (int8, one scale per row) */
int matvec_int8(const float *x, const int8_t *q, const float *scale, float *y,
                int64_t rows, int64_t out, int64_t in, int64_t threads) {
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t o = 0; o < out; o++) {
        const int8_t *row = q + o * in;
        for (int64_t m = 0; m < rows; m++) {
            const float *xm = x + m * in;
            float partial[GROUP] = {0};  /* GROUP independent sums: no serial dependency */
            for (int64_t k = 0; k < in; k += GROUP)
                for (int j = 0; j < GROUP; j++)
                    partial[j] += (float)row[k + j] * xm[k + j];
            float sum = 0.0f;
            for (int j = 0; j < GROUP; j++) sum += partial[j];
            y[m * out + o] = sum * scale[o];
        }
    }
    return 0;
}

/* int4 in groups of GROUP inputs, w[o, k] = code * scale[o, g] + offset[o, g], g = k / GROUP.
 * codes: (out, in / 2) bytes; in each group, byte j holds input j in its low nibble and
 * input j + GROUP/2 in its high nibble (llama.cpp's Q4 block layout).
 *
 * As llama.cpp does, the activations are rounded to int8 per group (x ≈ xscale * xq,
 * xscale = max|x| / 127), so a group's products are integer multiply-adds:
 *     sum_k w xq xscale  =  scale * xscale * sum_k code * xq  +  offset * xscale * sum_k xq
 * which is exactly the dot product of the weights with the rounded activations. (Taking
 * the offset term from the unrounded x instead would leave offset * sum_k (x - x_rounded)
 * over: the offsets are as large as the weights and that error does not cancel.)
 * Widening 4-bit codes to float would cost more instructions than reading them from
 * memory; small integers do not. */

typedef struct {
    int8_t *q;      /* (rows, in) */
    float *scale;   /* (rows, in / GROUP) */
    float *sum;     /* (rows, in / GROUP): xscale * sum of xq */
} Q8Rows;

static void quantize_rows_q8(const float *x, int64_t n_values, Q8Rows r) {
    for (int64_t g = 0; g < n_values / GROUP; g++) {
        const float *xg = x + g * GROUP;
        float amax = 0.0f;
        for (int j = 0; j < GROUP; j++) amax = fmaxf(amax, fabsf(xg[j]));
        const float step = amax / 127.0f, inverse = step > 0.0f ? 1.0f / step : 0.0f;
        int32_t total = 0;
        for (int j = 0; j < GROUP; j++) {
            r.q[g * GROUP + j] = (int8_t)lrintf(xg[j] * inverse);
            total += r.q[g * GROUP + j];
        }
        r.scale[g] = step;
        r.sum[g] = step * (float)total;  /* the sum of the rounded activations */
    }
}

#if defined(__AVX2__)
/* sum_j code_j * x_j over one group, as 8 int32 lanes (summed later, once per row). */
static inline __m256i group_dot_q4(const uint8_t *bytes, const int8_t *x) {
    const __m128i packed = _mm_loadu_si128((const __m128i *)bytes);
    const __m256i nibbles = _mm256_and_si256(            /* inputs 0..15 | 16..31 */
        _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(15));
    const __m256i pairs = _mm256_maddubs_epi16(nibbles, _mm256_loadu_si256((const __m256i *)x));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}
#endif

static float row_int4(const uint8_t *row, const float *s, const float *z, const int8_t *xq,
                      const float *xscale, const float *xsum, int64_t groups) {
    float shift = 0.0f;
    for (int64_t g = 0; g < groups; g++) shift += z[g] * xsum[g];
#if defined(__AVX2__)
    __m256 acc = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        const __m256i dot = group_dot_q4(row + g * (GROUP / 2), xq + g * GROUP);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(s[g] * xscale[g]), acc);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    for (int j = 0; j < 8; j++) shift += lanes[j];
#else
    for (int64_t g = 0; g < groups; g++) {
        const uint8_t *b = row + g * (GROUP / 2);
        const int8_t *xg = xq + g * GROUP;
        int32_t dot = 0;
        for (int j = 0; j < GROUP / 2; j++)
            dot += (b[j] & 15) * xg[j] + (b[j] >> 4) * xg[j + GROUP / 2];
        shift += s[g] * xscale[g] * (float)dot;
    }
#endif
    return shift;
}

int matvec_int4(const float *x, const uint8_t *codes, const float *scale,
                const float *offset, float *y, int64_t rows, int64_t out, int64_t in,
                int64_t threads) {
    const int64_t groups = in / GROUP;
    /* One block: the int8 activations, then their scales and sums (floats, aligned). */
    float *floats = malloc(2 * rows * groups * sizeof(float) + rows * in + 1);
    if (!floats) return -1;
    Q8Rows r = {(int8_t *)(floats + 2 * rows * groups), floats, floats + rows * groups};
    for (int64_t m = 0; m < rows; m++)
        quantize_rows_q8(x + m * in, in, (Q8Rows){r.q + m * in, r.scale + m * groups,
                                                  r.sum + m * groups});
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t o = 0; o < out; o++)
        for (int64_t m = 0; m < rows; m++)
            y[m * out + o] = row_int4(codes + o * (in / 2), scale + o * groups,
                                      offset + o * groups, r.q + m * in, r.scale + m * groups,
                                      r.sum + m * groups, groups);
    free(floats);
    return 0;
}

/* RMSNorm of each row: y = x / sqrt(mean(x^2) + eps) * weight. Decode normalizes a few
 * rows of a few hundred values, twice per layer; PyTorch's CPU kernel for it costs
 * about ten times this loop, in fixed overhead. */
int rms_norm_rows(const float *x, const float *weight, float *y, int64_t rows, int64_t dim,
                  float eps) {
    for (int64_t m = 0; m < rows; m++) {
        const float *xm = x + m * dim;
        const float sum = dot(xm, xm, dim);
        const float inverse = 1.0f / sqrtf(sum / (float)dim + eps);
        for (int64_t k = 0; k < dim; k++) y[m * dim + k] = xm[k] * inverse * weight[k];
    }
    return 0;
}

/* One decode step of attention: every row (sequence) brings one new token at its own
 * position. For row b with the token at position p = positions[b]:
 *   1. rotate q and k with the RoPE tables (x' = x * cos + swap_halves(x) * sin; no
 *      tables, no rotation),
 *   2. write k and v into the cache at slot p,
 *   3. for each query head h (kv head h / (heads / kv_heads)), softmax(scale * q . k_s)
 *      over the slots s = max(0, p - window + 1) .. p, and the weighted sum of v_s.
 * qkv: (rows, (heads + 2 kv_heads) * head_dim), q then k then v heads; cos, sin: (rows,
 * head_dim) or NULL; keys, values: element (b, j, s, d) at b * row_stride +
 * j * head_stride + s * head_dim + d, s < slots; out: (rows, heads * head_dim).
 * window <= 0: none. The scores live in one buffer of `slots` floats per thread. */
static void rotate(float *x, const float *cos, const float *sin, int64_t dim) {
    const int64_t half = dim / 2;
    for (int64_t i = 0; i < half; i++) {
        const float a = x[i], b = x[i + half];
        x[i] = a * cos[i] + b * sin[i];
        x[i + half] = b * cos[i + half] + a * sin[i + half];
    }
}

int decode_attention(const float *qkv, const float *cos, const float *sin,
                     const int64_t *positions, float *keys, float *values, float *out,
                     int64_t rows, int64_t heads, int64_t kv_heads, int64_t head_dim,
                     int64_t slots, int64_t row_stride, int64_t head_stride, int64_t window,
                     float scale, int64_t threads) {
    const int64_t width = (heads + 2 * kv_heads) * head_dim, group = heads / kv_heads;
    if (threads < 1) threads = 1;
    float *q = malloc((rows * heads * head_dim + threads * slots) * sizeof(float));
    if (!q) return -1;
    float *all_scores = q + rows * heads * head_dim;
    for (int64_t b = 0; b < rows; b++) {
        const float *row = qkv + b * width;
        const int64_t p = positions[b];
        float *qb = q + b * heads * head_dim;
        for (int64_t i = 0; i < heads * head_dim; i++) qb[i] = row[i];
        for (int64_t j = 0; j < kv_heads; j++) {
            float *k = keys + b * row_stride + j * head_stride + p * head_dim;
            float *v = values + b * row_stride + j * head_stride + p * head_dim;
            const float *k_new = row + (heads + j) * head_dim;
            const float *v_new = row + (heads + kv_heads + j) * head_dim;
            for (int64_t d = 0; d < head_dim; d++) {
                k[d] = k_new[d];
                v[d] = v_new[d];
            }
            if (cos) rotate(k, cos + b * head_dim, sin + b * head_dim, head_dim);
        }
        if (cos)
            for (int64_t h = 0; h < heads; h++)
                rotate(qb + h * head_dim, cos + b * head_dim, sin + b * head_dim, head_dim);
    }
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t task = 0; task < rows * heads; task++) {
        const int64_t b = task / heads, h = task % heads, j = h / group, p = positions[b];
        const int64_t first = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
        const float *qh = q + task * head_dim;
        const float *k = keys + b * row_stride + j * head_stride;
        const float *v = values + b * row_stride + j * head_stride;
        float *o = out + task * head_dim;
        float *scores = all_scores + omp_get_thread_num() * slots;
        float top = -INFINITY, total = 0.0f;
        for (int64_t s = first; s <= p; s++) {
            scores[s - first] = dot(qh, k + s * head_dim, head_dim) * scale;
            top = fmaxf(top, scores[s - first]);
        }
        for (int64_t d = 0; d < head_dim; d++) o[d] = 0.0f;
        for (int64_t s = first; s <= p; s++) {
            const float weight = expf(scores[s - first] - top);
            total += weight;
            for (int64_t d = 0; d < head_dim; d++) o[d] += weight * v[s * head_dim + d];
        }
        for (int64_t d = 0; d < head_dim; d++) o[d] /= total;
    }
    free(q);
    return 0;
}
