/* Matrix-vector products with weights kept quantized in memory: parrot's decode kernels.
 *
 * Decoding one token multiplies a few activation rows by every weight matrix once, so
 * the time goes into reading weights from memory, not into arithmetic. These loops read
 * each weight byte once, widen it to float in registers, and multiply by float32
 * activations: the result equals a float matmul with the dequantized weights, up to the
 * order of float additions. Plain C, written so that `gcc -O3 -march=native` vectorizes
 * the inner loops (AVX2 on x86, NEON on ARM); OpenMP splits the output rows across
 * `threads` threads of PyTorch's own OpenMP runtime (the same libgomp: one thread pool).
 *
 * Shapes: x (rows, in) float32, y (rows, out) float32, all contiguous. `in` is a multiple
 * of GROUP. Each weight row is read once and used for every activation row, so a batch
 * of decode rows costs little more than one.
 */
#include <stdint.h>

#define GROUP 32  /* inputs per int4 group, and the width of the int8 partial sums */

/* y[m, o] = scale[o] * sum_k q[o, k] * x[m, k]          (int8, one scale per row) */
void matvec_int8(const float *x, const int8_t *q, const float *scale, float *y,
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
}

/* int4 in groups of GROUP inputs, w[o, k] = code * scale[o, g] + offset[o, g], g = k / GROUP.
 * codes: (out, in / 2) bytes; in each group, byte j holds input j in its low nibble and
 * input j + GROUP/2 in its high nibble (llama.cpp's Q4 block layout), so both halves pair
 * with contiguous activations. Per group:
 *     sum_k w x = scale * sum_k code * x  +  offset * sum_k x,
 * and the sums of x per group (xsum: (rows, in / GROUP)) are computed once per call. */
void matvec_int4(const float *x, const float *xsum, const uint8_t *codes,
                 const float *scale, const float *offset, float *y,
                 int64_t rows, int64_t out, int64_t in, int64_t threads) {
    const int64_t groups = in / GROUP;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t o = 0; o < out; o++) {
        const uint8_t *row = codes + o * (in / 2);
        const float *s = scale + o * groups, *z = offset + o * groups;
        for (int64_t m = 0; m < rows; m++) {
            const float *xm = x + m * in, *xs = xsum + m * groups;
            float partial[GROUP] = {0}, shift = 0.0f;
            for (int64_t g = 0; g < groups; g++) {
                const uint8_t *b = row + g * (GROUP / 2);
                const float *xg = xm + g * GROUP;
                for (int j = 0; j < GROUP / 2; j++) {
                    partial[j] += (float)(b[j] & 15) * (s[g] * xg[j]);
                    partial[j + GROUP / 2] += (float)(b[j] >> 4) * (s[g] * xg[j + GROUP / 2]);
                }
                shift += z[g] * xs[g];
            }
            float sum = shift;
            for (int j = 0; j < GROUP; j++) sum += partial[j];
            y[m * out + o] = sum;
        }
    }
}
