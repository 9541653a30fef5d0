/* face/detect_avx512: AVX-512 paths of the detector, each giving exactly the results of the
 * scalar code in detect.c (and so OpenCV's boxes):
 *
 *   - the Haar stump cascade on 16 (or 8) windows of a row at once;
 *   - the integral images (sum and squared sum, wrapping 32-bit prefix sums);
 *   - the bilinear resize rows (the same 8.8 fixed-point integer arithmetic).
 *
 * Per window the cascade operations are the scalar ones in the same order and types: 32-bit
 * wrapping integral differences, the variance factor in double (nf = area * sqsum - sum^2,
 * 1 / sqrt(nf) rounded to float, rejected when not > 0 or when area * factor >= 0.1), feature
 * values as float w0 * s0 + w1 * s1 (+ w2 * s2) then times the factor, stage sums in double in
 * tree order. The project compiles as ISO C (-std=c11), where GCC does not contract a * b + c
 * into an FMA, so vector products and sums round like the scalar ones (objdump of this object
 * shows no vfmadd).
 *
 * Scan of a row: windows are numbered k = x / step. Stage 0 (and the variance factor) runs on
 * aligned groups of 16 consecutive windows; OpenCV's skip rule (the window after a stage-0
 * rejection is not visited) is then applied on the lane masks, so the visited windows are the
 * scalar scan's. The survivors go into a bit row; each later stage runs over it in spans that
 * start at the first live window not yet covered (16 lanes, or 8 when the upper half is dead),
 * and a span with a single live window finishes that window alone in scalar code. With step 1
 * a corner of 16 windows is one unaligned load. For step 2 the integral rows are first
 * rewritten as even columns then odd columns (face_deinterleave_avx512), which makes the
 * corners of windows x, x + 2, ... consecutive too.
 *
 * Gathers were tried for the survivors and were twice as slow as this on the AMD EPYC
 * (Zen 4) development machine.
 *
 * Compiled for every x86-64 target through function attributes; face_cpu_avx512 checks the
 * CPU at run time (AVX-512F and VL), and FERC_DETECT_NOSIMD=1 forces the scalar paths (for
 * comparisons). */
#include <stdlib.h>
#include <string.h>

#include "face/cascade_impl.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512vl")))

int face_cpu_avx512(void)
{
    const char *e = getenv("FERC_DETECT_NOSIMD");
    if (e && *e && *e != '0') return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") ? 1 : 0;
}

int face_detect_avx512_usable(const detector *d)
{
    if (!d->stumps || d->fc->kind != FACE_FEATURE_HAAR) return 0;
    return face_cpu_avx512();
}

/* ---- integral images (detect.c's integral_sum_sq; wrapping 32-bit sums, so any order of
 * the additions gives the same words) ----------------------------------------------------- */

AVX512 static inline __m512i prefix16(__m512i v, __m512i zero)
{
    v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 15));
    v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 14));
    v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 12));
    return _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 8));
}

AVX512 void face_integral_avx512(const uint8_t *img, int w, int h, size_t istride, uint32_t *sum, uint32_t *sq,
                                 size_t st)
{
    const __m512i zero = _mm512_setzero_si512(), last = _mm512_set1_epi32(15);
    memset(sum, 0, ((size_t)w + 1) * sizeof *sum);
    if (sq) memset(sq, 0, ((size_t)w + 1) * sizeof *sq);
    for (int y = 0; y < h; y++) {
        const uint8_t *p = img + (size_t)y * istride;
        uint32_t *s0 = sum + (size_t)y * st, *s1 = s0 + st;
        uint32_t *q0 = sq ? sq + (size_t)y * st : NULL, *q1 = sq ? q0 + st : NULL;
        __m512i cs = zero, cq = zero; /* the row sums so far, in every lane */
        s1[0] = 0;
        if (sq) q1[0] = 0;
        int x = 0;
        for (; x + 16 <= w; x += 16) {
            __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + x)));
            __m512i ps = _mm512_add_epi32(prefix16(v, zero), cs);
            _mm512_storeu_si512(s1 + x + 1, _mm512_add_epi32(_mm512_loadu_si512(s0 + x + 1), ps));
            cs = _mm512_permutexvar_epi32(last, ps);
            if (sq) {
                __m512i pq = _mm512_add_epi32(prefix16(_mm512_mullo_epi32(v, v), zero), cq);
                _mm512_storeu_si512(q1 + x + 1, _mm512_add_epi32(_mm512_loadu_si512(q0 + x + 1), pq));
                cq = _mm512_permutexvar_epi32(last, pq);
            }
        }
        uint32_t rs = (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(cs));
        uint32_t rq = (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(cq));
        for (; x < w; x++) {
            uint32_t v = p[x];
            rs += v;
            s1[x + 1] = s0[x + 1] + rs;
            if (sq) {
                rq += v * v;
                q1[x + 1] = q0[x + 1] + rq;
            }
        }
    }
}

/* ---- resize rows (the integer arithmetic of detect.c's lin_row and vertical pass) ---------- */

AVX512 int face_lin_row_avx512(const uint8_t *s, int sw, const int *ofs, const uint16_t *coef, int d, int end,
                               uint16_t *out)
{
    const __m512i lo16 = _mm512_set1_epi32(0xffff), one = _mm512_set1_epi32(1);
    for (; d + 16 <= end; d += 16) {
        int b = ofs[d];
        if (b + 32 > sw || ofs[d + 15] - b + 1 > 31) break;
        __m512i idx = _mm512_sub_epi32(_mm512_loadu_si512(ofs + d), _mm512_set1_epi32(b));
        __m512i a = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(s + b)));
        __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(s + b + 16)));
        __m512i p0 = _mm512_permutex2var_epi32(a, idx, c);
        __m512i p1 = _mm512_permutex2var_epi32(a, _mm512_add_epi32(idx, one), c);
        __m512i cc = _mm512_loadu_si512(coef + 2 * (size_t)d); /* coef[2d] | coef[2d + 1] << 16 */
        __m512i v = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_and_si512(cc, lo16), p0),
                                     _mm512_mullo_epi32(_mm512_srli_epi32(cc, 16), p1));
        _mm256_storeu_si256((__m256i *)(out + d), _mm512_cvtepi32_epi16(v));
    }
    return d;
}

AVX512 void face_lin_vpass_avx512(const uint16_t *r0, const uint16_t *r1, uint32_t c0, uint32_t c1, uint8_t *dst,
                                  int dw)
{
    const __m512i k0 = _mm512_set1_epi32((int)c0), k1 = _mm512_set1_epi32((int)c1);
    const __m512i half = _mm512_set1_epi32(1 << 15), max = _mm512_set1_epi32(255);
    int x = 0;
    for (; x + 16 <= dw; x += 16) {
        __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(r0 + x)));
        __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(r1 + x)));
        __m512i v = _mm512_add_epi32(_mm512_add_epi32(_mm512_mullo_epi32(a, k0), _mm512_mullo_epi32(b, k1)), half);
        v = _mm512_min_epu32(_mm512_srli_epi32(v, 16), max);
        _mm_storeu_si128((__m128i *)(dst + x), _mm512_cvtepi32_epi8(v));
    }
    for (; x < dw; x++) {
        uint32_t v = (r0[x] * c0 + r1[x] * c1 + (1u << 15)) >> 16;
        dst[x] = (uint8_t)(v > 255 ? 255 : v);
    }
}

/* Sum of the rectangle with corner offsets o over 16 windows whose corners are consecutive
 * elements (step 1, or step 2 in the deinterleaved layout). */
AVX512 static inline __m512i rect16(const uint32_t *p, const int *o)
{
    __m512i a = _mm512_loadu_si512(p + o[0]), b = _mm512_loadu_si512(p + o[1]);
    __m512i c = _mm512_loadu_si512(p + o[2]), e = _mm512_loadu_si512(p + o[3]);
    return _mm512_add_epi32(_mm512_sub_epi32(_mm512_sub_epi32(a, b), c), e);
}

AVX512 void face_deinterleave_avx512(uint32_t *integral, size_t st, int rows, uint32_t *tmp)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    size_t ne = (st + 1) / 2, no = st / 2;
    for (int r = 0; r < rows; r++) {
        uint32_t *row = integral + (size_t)r * st;
        size_t k = 0;
        for (; k + 16 <= no; k += 16) {
            __m512i a = _mm512_loadu_si512(row + 2 * k), b = _mm512_loadu_si512(row + 2 * k + 16);
            _mm512_storeu_si512(tmp + k, _mm512_permutex2var_epi32(a, even, b));
            _mm512_storeu_si512(tmp + ne + k, _mm512_permutex2var_epi32(a, odd, b));
        }
        for (; k < ne; k++) {
            tmp[k] = row[2 * k];
            if (k < no) tmp[ne + k] = row[2 * k + 1];
        }
        memcpy(row, tmp, st * sizeof *row);
    }
}

/* One stage on all 16 lanes; returns the lanes whose stage sum is below the stage threshold. */
AVX512 static inline __mmask16 stage16(const stump *sp, int ntrees, double threshold, size_t pos, int deint,
                                       __m512 vnf)
{
    __m512d acc_lo = _mm512_setzero_pd(), acc_hi = _mm512_setzero_pd();
    const __m512d t = _mm512_set1_pd(threshold);
    for (int i = 0; i < ntrees; i++, sp++) {
        const haar_opt *f = &sp->haar;
        const uint32_t *p = f->base + pos;
        const int(*o)[4] = deint ? f->dofs : f->ofs;
        __m512 s0 = _mm512_cvtepi32_ps(rect16(p, o[0]));
        __m512 s1 = _mm512_cvtepi32_ps(rect16(p, o[1]));
        __m512 ret = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(f->weight[0]), s0),
                                   _mm512_mul_ps(_mm512_set1_ps(f->weight[1]), s1));
        if (f->weight[2] != 0.0f) {
            __m512 s2 = _mm512_cvtepi32_ps(rect16(p, o[2]));
            ret = _mm512_add_ps(ret, _mm512_mul_ps(_mm512_set1_ps(f->weight[2]), s2));
        }
        __m512 v = _mm512_mul_ps(ret, vnf);
        __mmask16 lt = _mm512_cmp_ps_mask(v, _mm512_set1_ps(sp->threshold), _CMP_LT_OQ);
        __m512d l = _mm512_set1_pd((double)sp->leaf[0]), r = _mm512_set1_pd((double)sp->leaf[1]);
        acc_lo = _mm512_add_pd(acc_lo, _mm512_mask_blend_pd((__mmask8)(lt & 0xff), r, l));
        acc_hi = _mm512_add_pd(acc_hi, _mm512_mask_blend_pd((__mmask8)(lt >> 8), r, l));
    }
    return (__mmask16)(_mm512_cmp_pd_mask(acc_lo, t, _CMP_LT_OQ) |
                       ((unsigned)_mm512_cmp_pd_mask(acc_hi, t, _CMP_LT_OQ) << 8));
}

/* The scalar tail: stages from `si` on for one window, as detect.c's run_window computes them
 * (ISO C: no contraction). Returns 1 when every stage passes. */
AVX512 static int finish_window(const detector *d, const stump *sp, int si, size_t pos, int deint, float vnf)
{
    const face_cascade *fc = d->fc;
    for (; si < fc->nstages; si++) {
        const cascade_stage *stg = &fc->stages[si];
        double acc = 0;
        for (int i = 0; i < stg->ntrees; i++, sp++) {
            const haar_opt *f = &sp->haar;
            const uint32_t *p = f->base + pos;
            const int(*o)[4] = deint ? f->dofs : f->ofs;
#define RS(c) ((float)(int32_t)(p[(c)[0]] - p[(c)[1]] - p[(c)[2]] + p[(c)[3]]))
            float ret = f->weight[0] * RS(o[0]) + f->weight[1] * RS(o[1]);
            if (f->weight[2] != 0.0f) ret += f->weight[2] * RS(o[2]);
#undef RS
            double v = ret * vnf;
            acc += sp->leaf[!(v < sp->threshold)];
        }
        if (acc < stg->threshold) return 0;
    }
    return 1;
}

/* stage16 on 8 windows (256-bit vectors, the stage sum in one 512-bit double vector). */
AVX512 static inline __mmask8 stage8(const stump *sp, int ntrees, double threshold, size_t pos, int deint, __m256 vnf)
{
    __m512d acc = _mm512_setzero_pd();
    const __m512d t = _mm512_set1_pd(threshold);
    for (int i = 0; i < ntrees; i++, sp++) {
        const haar_opt *f = &sp->haar;
        const uint32_t *p = f->base + pos;
        const int(*o)[4] = deint ? f->dofs : f->ofs;
#define R8(c)                                                                                            \
    _mm256_cvtepi32_ps(_mm256_add_epi32(                                                                 \
        _mm256_sub_epi32(_mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(p + (c)[0])),            \
                                          _mm256_loadu_si256((const __m256i *)(p + (c)[1]))),           \
                         _mm256_loadu_si256((const __m256i *)(p + (c)[2]))),                            \
        _mm256_loadu_si256((const __m256i *)(p + (c)[3]))))
        __m256 ret = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(f->weight[0]), R8(o[0])),
                                   _mm256_mul_ps(_mm256_set1_ps(f->weight[1]), R8(o[1])));
        if (f->weight[2] != 0.0f) ret = _mm256_add_ps(ret, _mm256_mul_ps(_mm256_set1_ps(f->weight[2]), R8(o[2])));
#undef R8
        __m256 v = _mm256_mul_ps(ret, vnf);
        __mmask8 lt = _mm256_cmp_ps_mask(v, _mm256_set1_ps(sp->threshold), _CMP_LT_OQ);
        acc = _mm512_add_pd(acc, _mm512_mask_blend_pd(lt, _mm512_set1_pd((double)sp->leaf[1]),
                                                      _mm512_set1_pd((double)sp->leaf[0])));
    }
    return _mm512_cmp_pd_mask(acc, t, _CMP_LT_OQ);
}

/* A span of 16 windows with fewer live ones than this is finished one window at a time. */
enum { DENSE_MIN_LANES = 2 };

size_t face_scan_scratch_bytes(int w)
{
    size_t n = (size_t)w + 64; /* the row's vnf_row (nk + 32) and two bit rows (nk / 32 + 3 words each) */
    return (n + 32) * sizeof(float) + 2 * (n / 32 + 4) * sizeof(uint32_t);
}

/* 16 bits of a bit row starting at bit p (the row has two spare zero words at its end). */
static inline unsigned get16(const uint32_t *bits, int p)
{
    uint64_t w = (uint64_t)bits[p >> 5] | (uint64_t)bits[(p >> 5) + 1] << 32;
    return (unsigned)(w >> (p & 31)) & 0xffffu;
}

static inline void clear16(uint32_t *bits, int p, unsigned m)
{
    uint64_t w = (uint64_t)m << (p & 31);
    bits[p >> 5] &= ~(uint32_t)w;
    bits[(p >> 5) + 1] &= ~(uint32_t)(w >> 32);
}

/* The first set bit at or after p, or n. */
static inline int next_bit(const uint32_t *bits, int p, int n)
{
    if (p >= n) return n;
    int q = p >> 5;
    uint32_t w = bits[q] & (~0u << (p & 31));
    int nw = (n + 31) >> 5;
    while (!w) {
        if (++q >= nw) return n;
        w = bits[q];
    }
    int r = (q << 5) + __builtin_ctz(w);
    return r < n ? r : n;
}

/* Windows are numbered k = x / step; window k's top-left integral index is row_pos + k (for
 * step 2 in the deinterleaved layout). Stage 0 runs on aligned groups of 16 windows, which
 * also fixes which windows OpenCV visits; every later stage runs over the row's live windows
 * in spans of 16 that start at the first live window not yet covered, so clustered survivors
 * share a vector evaluation; a span with a single live window is finished in scalar code. */
AVX512 int face_scan_row_avx512(const detector *d, size_t row_pos, int ww, int step, int *hit_x, void *scratch)
{
    const face_cascade *fc = d->fc;
    const int deint = step == 2;
    const int *nofs = deint ? d->dnofs : d->nofs;
    const __m512d area = _mm512_set1_pd(d->norm_area), zero = _mm512_setzero_pd();
    const __m512d one = _mm512_set1_pd(1.0), tenth = _mm512_set1_pd(1e-1);
    const int nk = (ww + step - 1) / step; /* windows in the row */
    const int nwords = nk / 32 + 3;
    float *vnf_row = scratch;
    uint32_t *alive_bits = (uint32_t *)(vnf_row + (size_t)nk + 32);
    uint32_t *hit_bits = alive_bits + nwords;
    memset(alive_bits, 0, 2 * (size_t)nwords * sizeof *alive_bits);
    unsigned skip = 0; /* the next window is skipped (the one before it failed stage 0) */
    int nalive = 0;

    for (int k0 = 0; k0 < nk; k0 += 16) {
        int nvalid = nk - k0 < 16 ? nk - k0 : 16;
        unsigned valid = nvalid == 16 ? 0xffffu : (1u << nvalid) - 1u;
        size_t pos = row_pos + (size_t)k0;

        /* variance normalization, in double as HaarEvaluator::setWindow */
        __m512i vs = rect16(d->sum + pos, nofs);
        __m512i vq = rect16(d->sq + pos, nofs);
        __m512d sum_lo = _mm512_cvtepi32_pd(_mm512_castsi512_si256(vs));
        __m512d sum_hi = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(vs, 1));
        __m512d sq_lo = _mm512_cvtepu32_pd(_mm512_castsi512_si256(vq));
        __m512d sq_hi = _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(vq, 1));
        __m512d nf_lo = _mm512_sub_pd(_mm512_mul_pd(area, sq_lo), _mm512_mul_pd(sum_lo, sum_lo));
        __m512d nf_hi = _mm512_sub_pd(_mm512_mul_pd(area, sq_hi), _mm512_mul_pd(sum_hi, sum_hi));
        unsigned pos_nf = _mm512_cmp_pd_mask(nf_lo, zero, _CMP_GT_OQ) |
                          ((unsigned)_mm512_cmp_pd_mask(nf_hi, zero, _CMP_GT_OQ) << 8);
        /* 1 / sqrt(nf) on the positive lanes only (the others are rejected anyway) */
        nf_lo = _mm512_mask_blend_pd((__mmask8)(pos_nf & 0xff), one, nf_lo);
        nf_hi = _mm512_mask_blend_pd((__mmask8)(pos_nf >> 8), one, nf_hi);
        __m256 f_lo = _mm512_cvtpd_ps(_mm512_div_pd(one, _mm512_sqrt_pd(nf_lo)));
        __m256 f_hi = _mm512_cvtpd_ps(_mm512_div_pd(one, _mm512_sqrt_pd(nf_hi)));
        unsigned small = _mm512_cmp_pd_mask(_mm512_mul_pd(area, _mm512_cvtps_pd(f_lo)), tenth, _CMP_LT_OQ) |
                         ((unsigned)_mm512_cmp_pd_mask(_mm512_mul_pd(area, _mm512_cvtps_pd(f_hi)), tenth, _CMP_LT_OQ)
                          << 8);
        __m512 vnf = _mm512_castpd_ps(
            _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(f_lo)), _mm256_castps_pd(f_hi), 1));
        _mm512_storeu_ps(vnf_row + k0, vnf);
        unsigned alive = valid & pos_nf & small;

        /* stage 0 on every lane, then OpenCV's skip rule on the lane masks */
        unsigned rej0 = 0;
        if (alive) {
            const cascade_stage *stg = &fc->stages[0];
            rej0 = alive & stage16(d->stumps, stg->ntrees, stg->threshold, pos, deint, vnf);
        }
        unsigned visited = 0;
        for (int i = 0; i < nvalid; i++) {
            unsigned v = !skip;
            visited |= v << i;
            skip = v & (rej0 >> i);
        }
        alive &= visited & ~rej0;
        alive_bits[k0 >> 5] |= alive << (k0 & 31);
        nalive += __builtin_popcount(alive);
    }

    const stump *sp = d->stumps + fc->stages[0].ntrees;
    for (int si = 1; si < fc->nstages && nalive > 0; si++) {
        const cascade_stage *stg = &fc->stages[si];
        for (int p = next_bit(alive_bits, 0, nk); p < nk;) {
            unsigned m = get16(alive_bits, p);
            if (__builtin_popcount(m) < DENSE_MIN_LANES) {
                /* a lone window: all its remaining stages, scalar */
                if (finish_window(d, sp, si, row_pos + (size_t)p, deint, vnf_row[p])) hit_bits[p >> 5] |= 1u << (p & 31);
                clear16(alive_bits, p, 1u);
                nalive--;
                p = next_bit(alive_bits, p + 1, nk);
                continue;
            }
            unsigned rej;
            if (m >> 8) /* live windows in both halves */
                rej = m & stage16(sp, stg->ntrees, stg->threshold, row_pos + (size_t)p, deint,
                                  _mm512_loadu_ps(vnf_row + p));
            else
                rej = m & stage8(sp, stg->ntrees, stg->threshold, row_pos + (size_t)p, deint,
                                 _mm256_loadu_ps(vnf_row + p));
            clear16(alive_bits, p, rej);
            nalive -= __builtin_popcount(rej);
            p = next_bit(alive_bits, p + 16, nk);
        }
        sp += stg->ntrees;
    }
    int nhits = 0;
    for (int q = 0; q < nwords; q++)
        for (uint32_t w = alive_bits[q] | hit_bits[q]; w; w &= w - 1) hit_x[nhits++] = ((q << 5) + __builtin_ctz(w)) * step;
    return nhits;
}

#else

int face_cpu_avx512(void)
{
    return 0;
}

int face_detect_avx512_usable(const detector *d)
{
    (void)d;
    return 0;
}

void face_integral_avx512(const uint8_t *img, int w, int h, size_t istride, uint32_t *sum, uint32_t *sq, size_t st)
{
    (void)img;
    (void)w;
    (void)h;
    (void)istride;
    (void)sum;
    (void)sq;
    (void)st;
}

int face_lin_row_avx512(const uint8_t *s, int sw, const int *ofs, const uint16_t *coef, int d, int end,
                        uint16_t *out)
{
    (void)s;
    (void)sw;
    (void)ofs;
    (void)coef;
    (void)end;
    (void)out;
    return d;
}

void face_lin_vpass_avx512(const uint16_t *r0, const uint16_t *r1, uint32_t c0, uint32_t c1, uint8_t *dst, int dw)
{
    (void)r0;
    (void)r1;
    (void)c0;
    (void)c1;
    (void)dst;
    (void)dw;
}

void face_deinterleave_avx512(uint32_t *integral, size_t st, int rows, uint32_t *tmp)
{
    (void)integral;
    (void)st;
    (void)rows;
    (void)tmp;
}

size_t face_scan_scratch_bytes(int w)
{
    (void)w;
    return 1;
}

int face_scan_row_avx512(const detector *d, size_t row_pos, int ww, int step, int *hit_x, void *scratch)
{
    (void)scratch;
    (void)d;
    (void)row_pos;
    (void)ww;
    (void)step;
    (void)hit_x;
    return 0;
}

#endif
