// Local self-attention over a K x K window, forward and backward, fused per (image, head).
//
// The maths is that of sasa_viz/local_ops.py (`window_attention_plain`), the readable
// twin of this file and what it is tested against:
//
//   logit[a,b,i,j] = scale * ( sum_c q[c,i,j] k[c,i+a-P,j+b-P] + row[a,i,j] + col[b,i,j] )
//   w[a,b,i,j]     = softmax over (a,b) of the logits (masked neighbours: w = 0)
//   out[c,i,j]     = sum_ab w[a,b,i,j] v[c,i+a-P,j+b-P]
//
// with P = `before` (K/2 for odd K) and k, v zero outside the map. Every array is one
// plane (one image and head) of a contiguous float32 (planes, ..., H, W) tensor.
//
// Why it is fast: one plane's q, k, v stay in the L1/L2 cache while all K*K offsets are
// worked on, and everything is computed for VL neighbouring pixels of a row at once, as
// one vector of VL floats (`vecf`, GCC/Clang vector extensions: one AVX-512 register of
// 16 floats, or an AVX2 register of 8). To make every vector full, k, v (and q, g) are
// first copied into scratch buffers padded with zeros: rows to H + K - 1, columns to a
// multiple of VL plus K - 1. The planes are shared out between threads.
//
// Built by sasa_viz/native.py (g++ -O3 -march=native) and called through ctypes.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

#ifdef __AVX512F__
constexpr int VL = 16;          // pixels per vector: one AVX-512 register of floats
#else
constexpr int VL = 8;           // one AVX2 register
#endif
constexpr int MAX_K = 63;                                       // checked in native.py
typedef float vecf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t veci __attribute__((vector_size(VL * sizeof(int32_t))));
typedef std::vector<vecf> Block;                                 // one vecf per (a, b), ...

inline vecf load(const float* p) { vecf v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, vecf v) { std::memcpy(p, &v, sizeof v); }
inline vecf splat(float x) { return vecf{} + x; }

// exp(x) for x <= 0, as vector arithmetic. Range reduction x = n ln2 + r with
// |r| <= ln2 / 2, then a degree-7 Taylor polynomial: relative error below 1e-7.
inline vecf exp_nonpositive(vecf x) {
    x = x < -87.0f ? splat(-87.0f) : x;                          // exp(-87) ~ 1.6e-38
    const vecf n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round(x / ln2)
    const vecf r = (x - n * 0.693359375f) + n * 2.12194440e-4f;   // x - n ln2, two parts
    vecf p = splat(1.0f / 5040);
    for (float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f})
        p = p * r + c;
    const veci two_n = (__builtin_convertvector(n, veci) + 127) << 23;  // 2^n as float bits
    return p * (vecf)two_n;
}

struct Shape {
    int d, H, W, K, before;
    int Wv;    // W rounded up to VL
    int Hp;    // H + K - 1: padded rows
    int Wp;    // Wv + K - 1: padded columns
    Shape(int d_, int H_, int W_, int K_, int before_)
        : d(d_), H(H_), W(W_), K(K_), before(before_),
          Wv((W_ + VL - 1) / VL * VL), Hp(H_ + K_ - 1), Wp(Wv + K_ - 1) {}
    int64_t plane() const { return int64_t(H) * W; }
    int64_t padded() const { return int64_t(d) * Hp * Wp; }
    int64_t rows() const { return int64_t(d) * H * Wv; }
    // offsets into a (C, H, Wv) buffer and a (C, Hp, Wp) padded one
    int64_t at(int c, int i, int j) const { return (int64_t(c) * H + i) * Wv + j; }
    int64_t at_pad(int c, int i, int j) const { return (int64_t(c) * Hp + i) * Wp + j; }
};

// dst[0..n) = src[0..n), inline: n is a row (a few vectors), too short for a memcpy call.
inline void copy_row(const float* src, float* dst, int n) {
    int j = 0;
    for (; j + VL <= n; j += VL) store(dst + j, load(src + j));
    for (; j < n; ++j) dst[j] = src[j];
}

// src (C, H, W) -> dst (C, rows, cols): src at (top, left), zeros elsewhere.
void copy_padded(const float* src, std::vector<float>& dst, int C, const Shape& s,
                 int rows, int cols, int top, int left) {
    dst.assign(int64_t(C) * rows * cols, 0.0f);
    for (int c = 0; c < C; ++c)
        for (int i = 0; i < s.H; ++i)
            copy_row(src + (int64_t(c) * s.H + i) * s.W,
                     &dst[(int64_t(c) * rows + i + top) * cols + left], s.W);
}

// dst (C, H, W) = the window at (top, left) of src (C, rows, cols).
void crop(const std::vector<float>& src, float* dst, int C, const Shape& s, int rows,
          int cols, int top, int left) {
    for (int c = 0; c < C; ++c)
        for (int i = 0; i < s.H; ++i)
            copy_row(&src[(int64_t(c) * rows + i + top) * cols + left],
                     dst + (int64_t(c) * s.H + i) * s.W, s.W);
}

// out[ab] = sum_c x[c, i, jc..] * y_pad[c, i + a, jc + b..]: the window dot products of
// the block's 8 pixels (q with k, or the output gradient with v).
void window_dots(const std::vector<float>& x, const std::vector<float>& y_pad, Block& out,
                 int i, int jc, const Shape& s) {
    std::fill(out.begin(), out.end(), vecf{});
    for (int a = 0; a < s.K; ++a)
        for (int c = 0; c < s.d; ++c) {
            const vecf xv = load(&x[s.at(c, i, jc)]);
            const float* y = &y_pad[s.at_pad(c, i + a, jc)];
            for (int b = 0; b < s.K; ++b) out[a * s.K + b] += xv * load(y + b);
        }
}

// out[c, i, jc..] = sum_ab w[ab] * y_pad[c, i + a, jc + b..]: the weighted window sum.
void window_sum(const Block& w, const std::vector<float>& y_pad, std::vector<float>& out,
                Block& acc, int i, int jc, const Shape& s) {
    std::fill(acc.begin(), acc.end(), vecf{});
    for (int a = 0; a < s.K; ++a)
        for (int b = 0; b < s.K; ++b) {
            const vecf wv = w[a * s.K + b];
            for (int c = 0; c < s.d; ++c)
                acc[c] += wv * load(&y_pad[s.at_pad(c, i + a, jc + b)]);
        }
    for (int c = 0; c < s.d; ++c) store(&out[s.at(c, i, jc)], acc[c]);
}

// out[c, p, sc..] = sum_ab w_pad[ab', p + a, sc + b..] * x_pad[c, p + a, sc + b..] with
// ab' = (K-1-a, K-1-b): the adjoint of both above, written as a gather. It gives the
// gradient of the keys (w: d loss / d logits, x: q) and of the values (w: the weights,
// x: the output gradient) at key pixel (p, sc..), from every pixel whose window holds
// it. Both arrays are per-pixel maps padded by K-1-P rows and columns before the map.
void window_gather(const std::vector<float>& w_pad, const std::vector<float>& x_pad,
                   std::vector<float>& out, Block& acc, int p, int sc, const Shape& s) {
    std::fill(acc.begin(), acc.end(), vecf{});
    for (int a = 0; a < s.K; ++a)
        for (int b = 0; b < s.K; ++b) {
            const int flipped = (s.K - 1 - a) * s.K + s.K - 1 - b;
            const vecf wv = load(&w_pad[s.at_pad(flipped, p + a, sc + b)]);
            for (int c = 0; c < s.d; ++c)
                acc[c] += wv * load(&x_pad[s.at_pad(c, p + a, sc + b)]);
        }
    for (int c = 0; c < s.d; ++c) store(&out[s.at(c, p, sc)], acc[c]);
}

struct Scratch {
    std::vector<float> q, k_pad, v_pad, out, row, col, g, gq, gk, gv, grow, gcol,
        q_back, g_back, w_back, gl_back;   // maps padded before the map, for window_gather
    Block logits, weights, acc;
};

// 1 for the block's pixels that exist (column < W), 0 for the padding past W.
vecf pixel_exists(int jc, const Shape& s) {
    vecf on{};
    for (int t = 0; t < VL; ++t) on[t] = jc + t < s.W ? 1.0f : 0.0f;
    return on;
}

// The softmax of one block: logits (content + position, scaled) -> weights in place.
void block_softmax(Block& L, const Scratch& m, int i, int jc, bool mask, float scale,
                   const Shape& s) {
    const vecf exists = pixel_exists(jc, s);
    vecf col_inside[MAX_K];                       // 1 where neighbour column b is inside
    for (int b = 0; b < s.K; ++b)
        for (int t = 0; t < VL; ++t) {
            const int col = jc + t + b - s.before;
            col_inside[b][t] = !mask || (col >= 0 && col < s.W) ? exists[t] : 0.0f;
        }
    vecf top = splat(-3.0e38f);
    for (int a = 0; a < s.K; ++a) {
        const int r = i + a - s.before;
        const float row_inside = !mask || (r >= 0 && r < s.H) ? 1.0f : 0.0f;
        const vecf rv = load(&m.row[s.at(a, i, jc)]);
        for (int b = 0; b < s.K; ++b) {
            vecf& l = L[a * s.K + b];
            l = (l + rv + load(&m.col[s.at(b, i, jc)])) * scale;
            const vecf inside = col_inside[b] * row_inside;
            top = inside > 0.0f && l > top ? l : top;
        }
    }
    vecf total{};
    for (int a = 0; a < s.K; ++a) {
        const int r = i + a - s.before;
        const float row_inside = !mask || (r >= 0 && r < s.H) ? 1.0f : 0.0f;
        for (int b = 0; b < s.K; ++b) {
            vecf& l = L[a * s.K + b];
            const vecf x = l - top;
            l = exp_nonpositive(x < 0.0f ? x : vecf{}) * (col_inside[b] * row_inside);
            total += l;
        }
    }
    const vecf inverse = total > 0.0f ? 1.0f / total : vecf{};
    for (auto& l : L) l *= inverse;
}

// Copies a block's K*K vectors to the (K*K, H, W) plane `to` at row i, columns jc..
void store_block(const Block& block, float* to, int i, int jc, const Shape& s) {
    for (int ab = 0; ab < s.K * s.K; ++ab)
        copy_row(reinterpret_cast<const float*>(&block[ab]),
                 to + (int64_t(ab) * s.H + i) * s.W + jc, std::min(VL, s.W - jc));
}

void forward_plane(const float* q, const float* k, const float* v, const float* row,
                   const float* col, float* w, float* content, float* out, const Shape& s,
                   bool mask, float scale, Scratch& m) {
    const int KK = s.K * s.K;
    copy_padded(q, m.q, s.d, s, s.H, s.Wv, 0, 0);
    copy_padded(k, m.k_pad, s.d, s, s.Hp, s.Wp, s.before, s.before);
    copy_padded(v, m.v_pad, s.d, s, s.Hp, s.Wp, s.before, s.before);
    copy_padded(row, m.row, row ? s.K : 0, s, s.H, s.Wv, 0, 0);  // zeros without position
    copy_padded(col, m.col, col ? s.K : 0, s, s.H, s.Wv, 0, 0);
    m.row.resize(int64_t(s.K) * s.H * s.Wv);
    m.col.resize(m.row.size());
    m.out.resize(s.rows());
    m.logits.resize(KK);
    m.acc.resize(s.d);
    for (int i = 0; i < s.H; ++i)
        for (int jc = 0; jc < s.Wv; jc += VL) {
            window_dots(m.q, m.k_pad, m.logits, i, jc, s);
            if (content) store_block(m.logits, content, i, jc, s);   // q.k, for a trace
            block_softmax(m.logits, m, i, jc, mask, scale, s);
            if (w) store_block(m.logits, w, i, jc, s);
            window_sum(m.logits, m.v_pad, m.out, m.acc, i, jc, s);
        }
    crop(m.out, out, s.d, s, s.H, s.Wv, 0, 0);
}

// One plane backward, from the output gradient g. The weights are not read back from the
// forward (a tensor K*K times the size of q, written and read again through memory):
// each block's logits and softmax are recomputed as the forward made them, while the
// block is in cache. A first pass over the pixels gives them and d loss / d logits (and
// from these the gradients of q and of the position logits); a second gathers the
// gradients of k and v.
void backward_plane(const float* q, const float* k, const float* v, const float* row,
                    const float* col, const float* g, float* gq, float* gk, float* gv,
                    float* grow, float* gcol, const Shape& s, bool mask, float scale,
                    Scratch& m) {
    const int KK = s.K * s.K, back = s.K - 1 - s.before;
    copy_padded(q, m.q, s.d, s, s.H, s.Wv, 0, 0);
    copy_padded(g, m.g, s.d, s, s.H, s.Wv, 0, 0);
    copy_padded(k, m.k_pad, s.d, s, s.Hp, s.Wp, s.before, s.before);
    copy_padded(v, m.v_pad, s.d, s, s.Hp, s.Wp, s.before, s.before);
    copy_padded(row, m.row, row ? s.K : 0, s, s.H, s.Wv, 0, 0);  // zeros without position
    copy_padded(col, m.col, col ? s.K : 0, s, s.H, s.Wv, 0, 0);
    m.row.resize(int64_t(s.K) * s.H * s.Wv);
    m.col.resize(m.row.size());
    copy_padded(q, m.q_back, s.d, s, s.Hp, s.Wp, back, back);
    copy_padded(g, m.g_back, s.d, s, s.Hp, s.Wp, back, back);
    m.w_back.assign(int64_t(KK) * s.Hp * s.Wp, 0.0f);
    m.gl_back.assign(int64_t(KK) * s.Hp * s.Wp, 0.0f);
    m.gq.resize(s.rows());
    m.gk.resize(s.rows());
    m.gv.resize(s.rows());
    m.grow.resize(int64_t(s.K) * s.H * s.Wv);
    m.gcol.resize(m.grow.size());
    m.weights.resize(KK);
    m.logits.resize(KK);
    m.acc.resize(s.d);
    Block& W = m.weights;   // the block's weights
    Block& G = m.logits;    // d loss / d weights, then d loss / d logits
    for (int i = 0; i < s.H; ++i)
        for (int jc = 0; jc < s.Wv; jc += VL) {
            window_dots(m.q, m.k_pad, W, i, jc, s);                     // the forward's
            block_softmax(W, m, i, jc, mask, scale, s);                 // weights, again
            for (int ab = 0; ab < KK; ++ab) store(&m.w_back[s.at_pad(ab, i + back, jc + back)], W[ab]);
            window_dots(m.g, m.v_pad, G, i, jc, s);                     // g . v
            vecf inner{};                                               // sum_ab w dw
            for (int ab = 0; ab < KK; ++ab) inner += W[ab] * G[ab];
            for (int ab = 0; ab < KK; ++ab) {                           // softmax adjoint
                G[ab] = W[ab] * (G[ab] - inner) * scale;
                store(&m.gl_back[s.at_pad(ab, i + back, jc + back)], G[ab]);
            }
            for (int a = 0; a < s.K; ++a) {   // row[a] meets every b; col[b] every a
                vecf by_row{}, by_col{};
                for (int b = 0; b < s.K; ++b) {
                    by_row += G[a * s.K + b];
                    by_col += G[b * s.K + a];
                }
                store(&m.grow[s.at(a, i, jc)], by_row);
                store(&m.gcol[s.at(a, i, jc)], by_col);
            }
            window_sum(G, m.k_pad, m.gq, m.acc, i, jc, s);             // d/dq
        }
    for (int p = 0; p < s.H; ++p)
        for (int sc = 0; sc < s.Wv; sc += VL) {
            window_gather(m.gl_back, m.q_back, m.gk, m.acc, p, sc, s);   // d/dk
            window_gather(m.w_back, m.g_back, m.gv, m.acc, p, sc, s);    // d/dv
        }
    crop(m.gq, gq, s.d, s, s.H, s.Wv, 0, 0);
    crop(m.gk, gk, s.d, s, s.H, s.Wv, 0, 0);
    crop(m.gv, gv, s.d, s, s.H, s.Wv, 0, 0);
    if (grow) crop(m.grow, grow, s.K, s, s.H, s.Wv, 0, 0);
    if (gcol) crop(m.gcol, gcol, s.K, s, s.H, s.Wv, 0, 0);
}

// Run fn(plane, scratch) for every plane, spread over `threads` threads.
template <typename Fn>
void for_each_plane(int64_t planes, int threads, Fn fn) {
    threads = int(std::max<int64_t>(1, std::min<int64_t>(threads, planes)));
    auto work = [&](int id) {
        Scratch scratch;
        for (int64_t p = id; p < planes; p += threads) fn(p, scratch);
    };
    std::vector<std::thread> pool;
    for (int id = 1; id < threads; ++id) pool.emplace_back(work, id);
    work(0);
    for (auto& t : pool) t.join();
}

}  // namespace

// The C interface ctypes calls. row/col/grow/gcol may be null (no position term), and
// so may w and content in the forward (the weights and the content logits q.k are kept
// only for a trace: the backward recomputes the weights).
extern "C" {
void window_attention_forward(const float* q, const float* k, const float* v,
                              const float* row, const float* col, float* w, float* content,
                              float* out, int64_t planes, int d, int H, int W, int K,
                              int before, int mask, float scale, int threads) {
    const Shape s(d, H, W, K, before);
    const int64_t n = s.plane() * d, nk = s.plane() * K, nw = s.plane() * K * K;
    for_each_plane(planes, threads, [&](int64_t p, Scratch& m) {
        forward_plane(q + p * n, k + p * n, v + p * n, row ? row + p * nk : nullptr,
                      col ? col + p * nk : nullptr, w ? w + p * nw : nullptr,
                      content ? content + p * nw : nullptr, out + p * n, s, mask != 0,
                      scale, m);
    });
}

void window_attention_backward(const float* q, const float* k, const float* v,
                               const float* row, const float* col, const float* g, float* gq,
                               float* gk, float* gv, float* grow, float* gcol, int64_t planes,
                               int d, int H, int W, int K, int before, int mask, float scale,
                               int threads) {
    const Shape s(d, H, W, K, before);
    const int64_t n = s.plane() * d, nk = s.plane() * K;
    for_each_plane(planes, threads, [&](int64_t p, Scratch& m) {
        backward_plane(q + p * n, k + p * n, v + p * n, row ? row + p * nk : nullptr,
                       col ? col + p * nk : nullptr, g + p * n, gq + p * n, gk + p * n,
                       gv + p * n, grow ? grow + p * nk : nullptr,
                       gcol ? gcol + p * nk : nullptr, s, mask != 0, scale, m);
    });
}
}
