// The decode step (one new token per row) of a block-quantized decoder on x86-64 CPUs with AVX-512 VNNI.
//
// compiler/targets/native_decode.py lowers the compiler IR to a tape of the instructions below over named
// activation values, and packs every quantized weight in the panel layout the matmul reads; this file runs a tape.
// Values are fp32 [rows, width] regions of scratch buffers (a split is a view, not a copy). Matmuls quantize their
// input rows to int8 per block of 32 and read the weight codes as unsigned bytes: one vpdpbusd multiplies 16
// output columns by 4 inputs, so each weight byte is loaded once per step and used by every row; batches of 5 or
// more rows use AMX tiles instead where the CPU and the kernel allow them.
//
// Weight panel layout (16 output columns, then block by block along K, 32 inputs a block):
//   4-bit: 4 chunks of 64 bytes, chunk t byte [c * 4 + i] = q[c][4t + i] | q[c][16 + 4t + i] << 4
//   8-bit: 8 chunks of 64 bytes, chunk t byte [c * 4 + i] = q[c][4t + i]
//   then 16 fp16 scales d[c] and 16 fp16 centres z[c]: w = d (q - half) + z, half = 8 or 128.
// A row's block contributes d dx dot(q, xq) + (z - half d) dx sum(xq) with x ~ dx * xq.
#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { OP_EMBED = 1, OP_RMS_NORM, OP_SKIP_RMS_NORM, OP_LINEAR, OP_HEAD_RMS_NORM, OP_ATTENTION, OP_ADD, OP_SILU_MUL };
enum { W_F32 = 0, W_Q4 = 4, W_Q8 = 8 };  // F32: norm weights and biases
enum { BLOCK = 32, PANEL = 16, MAX_GROUP = 8, MAX_CHUNKS = 16 };  // chunks: head_dim / 16
enum { VNNI_ROWS = 8, AMX_ROWS = 16, AMX_MIN_ROWS = 5 };  // rows a matmul pass takes; AMX from 5 rows (measured)

typedef struct { int32_t op, a[7]; float eps; } Instr;  // operands: value ids, then weight ids / layer / sizes
typedef struct { int32_t buffer, offset, width; } Value;
typedef struct { int64_t kind, rows, cols, offset; } Weight;  // rows = N (output columns of a matmul), cols = K

typedef struct {
  int num_heads, kv_heads, head_dim, max_rows, max_len, max_k, logits_value;
  int n_instr, n_buffers;
  Instr *instr;
  Value *values;
  int32_t *buffer_widths;
  float **buffers;
  Weight *weights;
  const uint8_t *blob;
  float *inv_freq, *cos, *sin;  // cos/sin [rows, head_dim / 2] of this step's positions
  int8_t *xq;                   // [rows, max_k] int8 activations
  float *xd, *xs;               // [rows, max_k / 32] their block scales and scaled sums
  float *scores;                // [threads, MAX_GROUP, max_len]
  int threads, amx;
} Decoder;

static inline float *value_row(const Decoder *d, int v, int row) {
  const Value *x = &d->values[v];
  return d->buffers[x->buffer] + (size_t)row * d->buffer_widths[x->buffer] + x->offset;
}

static inline int block_bytes(int kind) { return kind == W_Q4 ? 256 + 64 : 512 + 64; }

// -- activations ------------------------------------------------------------------------------------------------
static void quantize_row(const float *x, int k, int8_t *q, float *scale, float *sum) {
  for (int b = 0; b < k / BLOCK; b++) {
    __m512 a0 = _mm512_loadu_ps(x + b * BLOCK), a1 = _mm512_loadu_ps(x + b * BLOCK + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a0), _mm512_abs_ps(a1)));
    float d = amax / 127.f, inv = amax > 0 ? 127.f / amax : 0.f;
    __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(a0, _mm512_set1_ps(inv)));
    __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(a1, _mm512_set1_ps(inv)));
    _mm_storeu_si128((__m128i *)(q + b * BLOCK), _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(q + b * BLOCK + 16), _mm512_cvtsepi32_epi8(i1));
    scale[b] = d;
    sum[b] = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
  }
}

static void rms_norm_row(const float *x, int n, const float *w, float eps, float *y) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
  float r = 1.f / sqrtf((float)(ss / n) + eps);
  for (int i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

// -- matmul -----------------------------------------------------------------------------------------------------
static inline void unpack_block(const uint8_t *blk, int kind, __m512i c[8]) {
  if (kind == W_Q4) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    for (int t = 0; t < 4; t++) {
      __m512i v = _mm512_loadu_si512(blk + 64 * t);
      c[t] = _mm512_and_si512(v, low);
      c[t + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
    }
  } else {
    for (int t = 0; t < 8; t++) c[t] = _mm512_loadu_si512(blk + 64 * t);
  }
}

// 16 columns of int32 dot products of one block with each of m rows of int8 activations: AMX, for batches
typedef struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } TileConfig;
static __thread int tile_rows;  // the row count this thread's tiles are configured for (0: none)

static void configure_tiles(int m) {
  if (tile_rows == m) return;
  TileConfig config = {.palette = 1};
  for (int pair = 0; pair < 2; pair++) {  // tiles 0-2 and 3-5: two blocks in flight
    config.rows[3 * pair] = (uint8_t)m, config.colsb[3 * pair] = 64;          // dots: m rows x 16 int32
    config.rows[3 * pair + 1] = (uint8_t)m, config.colsb[3 * pair + 1] = BLOCK;  // activations: m rows x 32 int8
    config.rows[3 * pair + 2] = BLOCK / 4, config.colsb[3 * pair + 2] = 64;   // codes: 8 rows x 16 columns x 4
  }
  _tile_loadconfig(&config);
  tile_rows = m;
}

// AMX: the dots of blocks b and b + 1 (if there is one) of a panel with m rows into dots[0] and dots[1], the two
// multiplications in flight together
static void amx_pair_dots(const Weight *w, const uint8_t *blk, int bytes, int two, const int8_t *x, int xk,
                          int32_t (*dots)[AMX_ROWS * 16]) {
  _Alignas(64) uint8_t unpacked[2][8 * 64];
  if (w->kind == W_Q4) {
    __m512i c[8];
    for (int j = 0; j <= two; j++) {
      unpack_block(blk + j * bytes, W_Q4, c);
      for (int t = 0; t < 8; t++) _mm512_store_si512(unpacked[j] + 64 * t, c[t]);
    }
  }
  _tile_zero(0);
  _tile_loadd(1, x, xk);
  _tile_loadd(2, w->kind == W_Q4 ? unpacked[0] : blk, 64);
  _tile_dpbsud(0, 1, 2);
  if (two) {
    _tile_zero(3);
    _tile_loadd(4, x + BLOCK, xk);
    _tile_loadd(5, w->kind == W_Q4 ? unpacked[1] : blk + bytes, 64);
    _tile_dpbsud(3, 4, 5);
  }
  _tile_stored(0, dots[0], 64);
  if (two) _tile_stored(3, dots[1], 64);
}

// y[r][the panel's 16 columns] for rows [r0, r0 + m) of the quantized input: m <= VNNI_ROWS with vpdpbusd,
// m <= AMX_ROWS with AMX tiles
static void matmul_panel(const Decoder *d, const Weight *w, int panel, int r0, int m, int amx, float *y, int y_stride,
                         const float *bias) {
  const int nb = (int)w->cols / BLOCK, bytes = block_bytes((int)w->kind), codes = bytes - 64;
  const float half = w->kind == W_Q4 ? 8.f : 128.f;
  const uint8_t *base = d->blob + w->offset + (size_t)panel * nb * bytes;
  const int xk = d->max_k, xb = d->max_k / BLOCK;
  const int8_t *x = d->xq + (size_t)r0 * xk;
  _Alignas(64) int32_t tile_dots[2][AMX_ROWS * 16];
  __m512 acc[AMX_ROWS];
  for (int r = 0; r < m; r++) acc[r] = _mm512_setzero_ps();
  for (int b = 0; b < nb; b++) {
    const uint8_t *blk = base + (size_t)b * bytes;
    __m512i c[8];
    if (!amx) unpack_block(blk, (int)w->kind, c);
    else if (b % 2 == 0) amx_pair_dots(w, blk, bytes, b + 1 < nb, x + b * BLOCK, xk, tile_dots);
    __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + codes)));
    __m512 centre = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + codes + 32)));
    __m512 offset = _mm512_fnmadd_ps(_mm512_set1_ps(half), scale, centre);  // z - half d
    for (int r = 0; r < m; r++) {
      __m512i dot;
      if (amx) {
        dot = _mm512_load_si512(tile_dots[b % 2] + 16 * r);
      } else {
        const int32_t *xq = (const int32_t *)(x + (size_t)r * xk + b * BLOCK);
        dot = _mm512_setzero_si512();
        for (int t = 0; t < 8; t++) dot = _mm512_dpbusd_epi32(dot, c[t], _mm512_set1_epi32(xq[t]));
      }
      float dx = d->xd[(r0 + r) * xb + b], sx = d->xs[(r0 + r) * xb + b];
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(scale, _mm512_set1_ps(dx)), acc[r]);
      acc[r] = _mm512_fmadd_ps(offset, _mm512_set1_ps(sx), acc[r]);
    }
  }
  const int n0 = panel * PANEL, live = (int)w->rows - n0 < PANEL ? (int)w->rows - n0 : PANEL;
  const __mmask16 mask = (__mmask16)((1u << live) - 1);
  __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
  for (int r = 0; r < m; r++)
    _mm512_mask_storeu_ps(y + (size_t)(r0 + r) * y_stride + n0, mask, _mm512_add_ps(acc[r], b));
}

// run by every thread of the team
static void linear(Decoder *d, int rows, const Instr *in) {
  const Weight *w = &d->weights[in->a[2]];
  const int k = (int)w->cols, xb = d->max_k / BLOCK;
  #pragma omp for schedule(static)
  for (int r = 0; r < rows; r++)
    quantize_row(value_row(d, in->a[0], r), k, d->xq + (size_t)r * d->max_k, d->xd + r * xb, d->xs + r * xb);
  const float *bias = in->a[3] >= 0 ? (const float *)(d->blob + d->weights[in->a[3]].offset) : NULL;
  const int panels = ((int)w->rows + PANEL - 1) / PANEL, y_stride = d->buffer_widths[d->values[in->a[1]].buffer];
  const int amx = d->amx && rows >= AMX_MIN_ROWS, group = amx ? AMX_ROWS : VNNI_ROWS;
  float *y = value_row(d, in->a[1], 0);
  #pragma omp for schedule(static)
  for (int p = 0; p < panels; p++)
    for (int r0 = 0; r0 < rows; r0 += group) {
      const int m = rows - r0 < group ? rows - r0 : group;
      if (amx) configure_tiles(m);
      matmul_panel(d, w, p, r0, m, amx, y, y_stride, bias);
    }
}

// -- the rest of a layer ----------------------------------------------------------------------------------------
static void embed_row(const Decoder *d, const Weight *w, int64_t token, float *y) {
  const int nb = (int)w->cols / BLOCK, bytes = block_bytes((int)w->kind), lane = (int)(token % PANEL);
  const float half = w->kind == W_Q4 ? 8.f : 128.f;
  const uint8_t *base = d->blob + w->offset + (size_t)(token / PANEL) * nb * bytes;
  for (int b = 0; b < nb; b++) {
    const uint8_t *blk = base + (size_t)b * bytes;
    const uint16_t *params = (const uint16_t *)(blk + bytes - 64);
    float scale = _cvtsh_ss(params[lane]), centre = _cvtsh_ss(params[PANEL + lane]);
    for (int i = 0; i < BLOCK; i++) {
      int q;
      if (w->kind == W_Q4) {
        int t = (i % 16) / 4, byte = blk[64 * t + lane * 4 + i % 4];
        q = i < 16 ? byte & 0x0F : byte >> 4;
      } else {
        q = blk[64 * (i / 4) + lane * 4 + i % 4];
      }
      y[b * BLOCK + i] = scale * (q - half) + centre;
    }
  }
}

// non-interleaved rotary on each head of x
static void rotate(float *x, int heads, int head_dim, const float *cos, const float *sin) {
  const int h2 = head_dim / 2;
  for (int h = 0; h < heads; h++) {
    float *a = x + h * head_dim, *b = a + h2;
    for (int i = 0; i < h2; i++) {
      float x1 = a[i], x2 = b[i];
      a[i] = x1 * cos[i] - x2 * sin[i];
      b[i] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

// heads [0, heads) of one KV head's group, for one row: they read each cached key and value once together
static void attend_group(const Decoder *d, const float *q, int heads, const float *keys, const float *values, int n,
                         float *out, float *scores) {
  const int hd = d->head_dim, chunks = hd / 16;
  const float scale = 1.f / sqrtf((float)hd);
  for (int t = 0; t < n; t++) {
    __m512 k[MAX_CHUNKS];
    for (int c = 0; c < chunks; c++) k[c] = _mm512_loadu_ps(keys + (size_t)t * hd + 16 * c);
    for (int h = 0; h < heads; h++) {
      __m512 dot = _mm512_setzero_ps();
      for (int c = 0; c < chunks; c++) dot = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * hd + 16 * c), k[c], dot);
      scores[h * d->max_len + t] = _mm512_reduce_add_ps(dot) * scale;
    }
  }
  for (int h = 0; h < heads; h++) {
    float *s = scores + h * d->max_len, best = -FLT_MAX, total = 0;
    for (int t = 0; t < n; t++) best = s[t] > best ? s[t] : best;
    for (int t = 0; t < n; t++) total += s[t] = expf(s[t] - best);
    for (int t = 0; t < n; t++) s[t] /= total;
  }
  __m512 acc[MAX_GROUP][MAX_CHUNKS];
  for (int h = 0; h < heads; h++)
    for (int c = 0; c < chunks; c++) acc[h][c] = _mm512_setzero_ps();
  for (int t = 0; t < n; t++) {
    __m512 v[MAX_CHUNKS];
    for (int c = 0; c < chunks; c++) v[c] = _mm512_loadu_ps(values + (size_t)t * hd + 16 * c);
    for (int h = 0; h < heads; h++) {
      __m512 p = _mm512_set1_ps(scores[h * d->max_len + t]);
      for (int c = 0; c < chunks; c++) acc[h][c] = _mm512_fmadd_ps(p, v[c], acc[h][c]);
    }
  }
  for (int h = 0; h < heads; h++)
    for (int c = 0; c < chunks; c++) _mm512_storeu_ps(out + h * hd + 16 * c, acc[h][c]);
}

static void attention(Decoder *d, int rows, const Instr *in, const int64_t *positions, float **kv,
                      int64_t slot_stride) {
  const int hd = d->head_dim, layer = in->a[4], group = d->num_heads / d->kv_heads, rotary = in->a[5];
  const int parts = (group + MAX_GROUP - 1) / MAX_GROUP;
  float *keys = kv[2 * layer], *values = kv[2 * layer + 1];
  #pragma omp for schedule(static)
  for (int r = 0; r < rows; r++) {
    float *q = value_row(d, in->a[0], r), *k = value_row(d, in->a[1], r), *v = value_row(d, in->a[2], r);
    if (rotary) {
      rotate(q, d->num_heads, hd, d->cos + r * hd / 2, d->sin + r * hd / 2);
      rotate(k, d->kv_heads, hd, d->cos + r * hd / 2, d->sin + r * hd / 2);
    }
    for (int g = 0; g < d->kv_heads; g++) {
      size_t at = r * slot_stride + ((size_t)g * d->max_len + positions[r]) * hd;
      memcpy(keys + at, k + g * hd, hd * sizeof(float));
      memcpy(values + at, v + g * hd, hd * sizeof(float));
    }
  }
  #pragma omp for schedule(static) collapse(3)
  for (int r = 0; r < rows; r++)
    for (int g = 0; g < d->kv_heads; g++)
      for (int part = 0; part < parts; part++) {
        const int h0 = g * group + part * MAX_GROUP, left = group - part * MAX_GROUP;
        const int heads = left < MAX_GROUP ? left : MAX_GROUP;
        size_t cache = r * slot_stride + (size_t)g * d->max_len * hd;
        attend_group(d, value_row(d, in->a[0], r) + h0 * hd, heads, keys + cache, values + cache,
                     (int)positions[r] + 1, value_row(d, in->a[3], r) + h0 * hd,
                     d->scores + (size_t)omp_get_thread_num() * MAX_GROUP * d->max_len);
      }
}

static void rowwise(Decoder *d, int rows, const Instr *in, const int64_t *tokens) {
  #pragma omp for schedule(static)
  for (int r = 0; r < rows; r++) {
    const Value *out = &d->values[in->a[1]];
    float *y = value_row(d, in->a[1], r);
    switch (in->op) {
      case OP_EMBED:
        embed_row(d, &d->weights[in->a[2]], tokens[r], value_row(d, in->a[1], r));
        break;
      case OP_RMS_NORM:
        rms_norm_row(value_row(d, in->a[0], r), out->width,
                     (const float *)(d->blob + d->weights[in->a[2]].offset), in->eps, y);
        break;
      case OP_SKIP_RMS_NORM: {  // a: x, y, weight, skip, sum
        float *x = value_row(d, in->a[0], r), *skip = value_row(d, in->a[3], r), *sum = value_row(d, in->a[4], r);
        for (int i = 0; i < out->width; i++) sum[i] = x[i] + skip[i];
        rms_norm_row(sum, out->width, (const float *)(d->blob + d->weights[in->a[2]].offset), in->eps, y);
        break;
      }
      case OP_HEAD_RMS_NORM: {  // a: x, y, weight
        const float *x = value_row(d, in->a[0], r), *w = (const float *)(d->blob + d->weights[in->a[2]].offset);
        for (int h = 0; h < out->width / d->head_dim; h++)
          rms_norm_row(x + h * d->head_dim, d->head_dim, w, in->eps, y + h * d->head_dim);
        break;
      }
      case OP_ADD: {  // a: x, y, other
        const float *x = value_row(d, in->a[0], r), *o = value_row(d, in->a[2], r);
        for (int i = 0; i < out->width; i++) y[i] = x[i] + o[i];
        break;
      }
      case OP_SILU_MUL: {  // a: gate, y, up
        const float *g = value_row(d, in->a[0], r), *u = value_row(d, in->a[2], r);
        for (int i = 0; i < out->width; i++) y[i] = g[i] / (1.f + expf(-g[i])) * u[i];
        break;
      }
    }
  }
}

// -- the interface --------------------------------------------------------------------------------------------
// AMX tiles need the kernel's permission (Linux 5.16+); without it the VNNI path runs every batch
static int enable_amx(void) {
  enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

// config: num_heads, kv_heads, head_dim, max_rows, max_len, logits_value, threads, use AMX (the CPU has AMX-INT8)
void *nd_create(const int32_t *config, const Instr *instr, int n_instr, const Value *values, int n_values,
                const int32_t *buffer_widths, int n_buffers, const Weight *weights, const uint8_t *blob,
                const float *inv_freq) {
  Decoder *d = calloc(1, sizeof(Decoder));
  d->num_heads = config[0], d->kv_heads = config[1], d->head_dim = config[2], d->max_rows = config[3];
  d->max_len = config[4], d->logits_value = config[5], d->threads = config[6], d->amx = config[7] && enable_amx();
  d->instr = malloc(sizeof(Instr) * n_instr), memcpy(d->instr, instr, sizeof(Instr) * n_instr);
  d->values = malloc(sizeof(Value) * n_values), memcpy(d->values, values, sizeof(Value) * n_values);
  d->buffer_widths = malloc(4 * n_buffers), memcpy(d->buffer_widths, buffer_widths, 4 * n_buffers);
  d->n_instr = n_instr, d->n_buffers = n_buffers;
  d->weights = (Weight *)weights, d->blob = blob;  // owned by the caller
  d->max_k = BLOCK;
  for (int i = 0; i < n_instr; i++)
    if (instr[i].op == OP_LINEAR && weights[instr[i].a[2]].cols > d->max_k) d->max_k = (int)weights[instr[i].a[2]].cols;
  d->buffers = malloc(sizeof(float *) * n_buffers);
  for (int i = 0; i < n_buffers; i++)
    d->buffers[i] = aligned_alloc(64, ((size_t)d->max_rows * buffer_widths[i] * 4 + 63) / 64 * 64);
  d->inv_freq = malloc(4 * d->head_dim / 2), memcpy(d->inv_freq, inv_freq, 4 * d->head_dim / 2);
  d->cos = malloc(4 * d->max_rows * d->head_dim / 2), d->sin = malloc(4 * d->max_rows * d->head_dim / 2);
  d->xq = aligned_alloc(64, (size_t)d->max_rows * d->max_k);
  d->xd = malloc(4 * d->max_rows * d->max_k / BLOCK), d->xs = malloc(4 * d->max_rows * d->max_k / BLOCK);
  d->scores = malloc(sizeof(float) * d->threads * MAX_GROUP * d->max_len);
  return d;
}

// rows <= max_rows tokens at their positions; kv: per layer key, value base pointers of the rows' first slot;
// logits [rows, vocab]
void nd_step(Decoder *d, int rows, const int64_t *tokens, const int64_t *positions, float **kv, int64_t slot_stride,
             float *logits) {
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < d->head_dim / 2; i++) {
      float angle = (float)positions[r] * d->inv_freq[i];
      d->cos[r * d->head_dim / 2 + i] = cosf(angle), d->sin[r * d->head_dim / 2 + i] = sinf(angle);
    }
  #pragma omp parallel num_threads(d->threads)
  for (int i = 0; i < d->n_instr; i++) {
    const Instr *in = &d->instr[i];
    if (in->op == OP_LINEAR) linear(d, rows, in);
    else if (in->op == OP_ATTENTION) attention(d, rows, in, positions, kv, slot_stride);
    else rowwise(d, rows, in, tokens);
  }
  const Value *out = &d->values[d->logits_value];
  for (int r = 0; r < rows; r++)
    memcpy(logits + (size_t)r * out->width, value_row(d, d->logits_value, r), 4 * out->width);
}

void nd_free(Decoder *d) {
  for (int i = 0; i < d->n_buffers; i++) free(d->buffers[i]);
  free(d->buffers), free(d->instr), free(d->values), free(d->buffer_widths), free(d->inv_freq), free(d->cos);
  free(d->sin), free(d->xq), free(d->xd), free(d->xs), free(d->scores), free(d);
}
