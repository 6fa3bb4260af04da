// Fused-solver LTC, forward and analytic backward, as one native CPU kernel.
//
// The same function as ltc_fast.step / step_backward with solver "fused" (see native.py): each
// thread walks groups of kRows batch rows through the whole sequence in lockstep, the synapse
// activations are evaluated with ATen's vectorised exp, and the backward pass recomputes them
// instead of storing them.
//
// Recurrent synapses are compacted to the neurons that take part: the pre-synaptic neurons with
// outgoing synapses (pre_index) and the post-synaptic ones with incoming synapses (post_index),
// both all neurons (no index) for a fully connected wiring. Absent synapses inside that block
// have zero weight. The forward pass takes the block pre-synaptic-major (pre, post) and is
// vectorised over post-synaptic neurons; the backward pass takes it post-synaptic-major (post,
// pre) and is vectorised over pre-synaptic neurons; neither needs a horizontal reduction.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <limits>
#include <type_traits>
#include <vector>

namespace {

using at::vec::Vectorized;

struct Block {
  int64_t neurons;           // state size N
  int64_t pre, post;         // block size
  const int64_t* pre_index;  // (pre,) neuron of each block row; nullptr: all neurons in order
  const int64_t* post_index; // (post,)
};

// exp(-z): float32 uses ATen's polynomial exp (20 ulp, ~1e-6 relative, inlined), which clamps its
// argument (so a NaN z is passed through explicitly), float64 Sleef's.
template <typename T>
inline Vectorized<T> exp_neg(const Vectorized<T>& z) { return z.neg().exp(); }
template <>
inline Vectorized<float> exp_neg(const Vectorized<float>& z) {
  return Vectorized<float>::blendv(z.neg().exp_u20(), z, z.isnan());
}

// 1 / x for x >= 1 (or NaN): float32 refines the 14-bit hardware estimate by one Newton step (~1e-7
// relative), float64 divides. x is capped at the largest float first: exp_u20 overflows to inf for
// arguments near its upper limit, and the Newton step would turn inf * 0 into NaN (min keeps a NaN x).
template <typename T>
inline Vectorized<T> reciprocal(const Vectorized<T>& x) { return x.reciprocal(); }
#if defined(CPU_CAPABILITY_AVX512)
template <>
inline Vectorized<float> reciprocal(const Vectorized<float>& x) {
  const __m512 finite = _mm512_min_ps(_mm512_set1_ps(std::numeric_limits<float>::max()), x);
  const __m512 estimate = _mm512_rcp14_ps(finite);
  return _mm512_mul_ps(estimate, _mm512_fnmadd_ps(finite, estimate, _mm512_set1_ps(2.f)));
}
#endif

template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& z) {
  return reciprocal(Vectorized<T>(T(1)) + exp_neg(z));
}

// Loads and stores of n <= size() lanes: the last, partial vector of a row runs vectorised too
// (absent lanes load as zero and are never stored).
template <typename T>
inline Vectorized<T> load(const T* ptr, int64_t n) {
  return n == Vectorized<T>::size() ? Vectorized<T>::loadu(ptr) : Vectorized<T>::loadu(ptr, n);
}

template <typename T>
inline void store(const Vectorized<T>& x, T* ptr, int64_t n) {
  if (n == Vectorized<T>::size()) x.store(ptr); else x.store(ptr, n);
}

// The block's pre-synaptic values: v itself, or gathered into `gathered`.
template <typename T>
inline const T* pre_values(const Block& B, const T* v, T* gathered) {
  if (B.pre_index == nullptr) return v;
  for (int64_t q = 0; q < B.pre; ++q) gathered[q] = v[B.pre_index[q]];
  return gathered;
}

// num[i] = sum_j we s, cond[i] = sum_j w s with s = sigmoid(sigma (x_j - mu)), for a (pre, post)
// pre-synaptic-major population, vectorised over the post-synaptic neurons i, for R rows x at once
// (they share every parameter load).
template <typename T, int R>
void synapse_sums_pre_major(int64_t pre, int64_t post, const T* const* x, const T* sigma, const T* mu, const T* w,
                            const T* we, T* const* num, T* const* cond) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  for (int64_t i = 0; i < post; i += W) {
    const int64_t n = std::min(W, post - i);
    V acc_num[R], acc_cond[R];
    for (int r = 0; r < R; ++r) acc_num[r] = acc_cond[r] = V(T(0));
    for (int64_t j = 0; j < pre; ++j) {
      const int64_t at = j * post + i;
      const V m = load(mu + at, n), sg = load(sigma + at, n), ww = load(w + at, n), wwe = load(we + at, n);
      for (int r = 0; r < R; ++r) {
        const V s = sigmoid((V(x[r][j]) - m) * sg);
        acc_num[r] = at::vec::fmadd(s, wwe, acc_num[r]);
        acc_cond[r] = at::vec::fmadd(s, ww, acc_cond[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      store(acc_num[r], num[r] + i, n);
      store(acc_cond[r], cond[r] + i, n);
    }
  }
}

// Per-row scratch memory of block_sums.
template <typename T>
struct SumsScratch {
  std::vector<T> gathered, block_num, block_cond;
  explicit SumsScratch(const struct Block& B) : gathered(B.pre), block_num(B.post), block_cond(B.post) {}
};

// The sums of a block's synapses from the pre-synaptic values v of R rows onto every neuron (zero
// for neurons outside the block).
template <typename T, int R>
void block_sums(const Block& B, const T* const* v, const T* sigma, const T* mu, const T* w, const T* we,
                SumsScratch<T>* scratch, T* const* num, T* const* cond) {
  const T* x[R];
  T *block_num[R], *block_cond[R];
  for (int r = 0; r < R; ++r) {
    x[r] = pre_values(B, v[r], scratch[r].gathered.data());
    block_num[r] = B.post_index ? scratch[r].block_num.data() : num[r];
    block_cond[r] = B.post_index ? scratch[r].block_cond.data() : cond[r];
  }
  synapse_sums_pre_major<T, R>(B.pre, B.post, x, sigma, mu, w, we, block_num, block_cond);
  if (B.post_index == nullptr) return;
  for (int r = 0; r < R; ++r) {
    std::fill(num[r], num[r] + B.neurons, T(0));
    std::fill(cond[r], cond[r] + B.neurons, T(0));
    for (int64_t p = 0; p < B.post; ++p) {
      num[r][B.post_index[p]] = block_num[r][p];
      cond[r][B.post_index[p]] = block_cond[r][p];
    }
  }
}

// Batch rows the kernels walk together: they share every parameter load and every update of the
// parameter gradients.
constexpr int kRows = 4;

// Runs body(std::integral_constant<int, R>, first_row) over rows [begin, end) in groups of kRows
// (the last, shorter group row by row).
template <typename Body>
void for_row_groups(int64_t begin, int64_t end, Body body) {
  int64_t r = begin;
  for (; r + kRows <= end; r += kRows) body(std::integral_constant<int, kRows>(), r);
  for (; r < end; ++r) body(std::integral_constant<int, 1>(), r);
}

struct Params {
  torch::Tensor gleak, vleak, cm, sigma, mu, w, we, pre_index, post_index;
};

// A synapse block's tensors, contiguous (the neuron parameters stay undefined).
Params synapse_params(const torch::Tensor& sigma, const torch::Tensor& mu, const torch::Tensor& w,
                      const torch::Tensor& we, const c10::optional<torch::Tensor>& pre_index,
                      const c10::optional<torch::Tensor>& post_index) {
  auto optional = [](const c10::optional<torch::Tensor>& t) { return t.has_value() ? t->contiguous() : torch::Tensor(); };
  return Params{{}, {}, {}, sigma.contiguous(), mu.contiguous(), w.contiguous(), we.contiguous(),
                optional(pre_index), optional(post_index)};
}

Params contiguous_params(const torch::Tensor& gleak, const torch::Tensor& vleak, const torch::Tensor& cm,
                         const torch::Tensor& sigma, const torch::Tensor& mu, const torch::Tensor& w,
                         const torch::Tensor& we, const c10::optional<torch::Tensor>& pre_index,
                         const c10::optional<torch::Tensor>& post_index) {
  Params p = synapse_params(sigma, mu, w, we, pre_index, post_index);
  p.gleak = gleak.contiguous(), p.vleak = vleak.contiguous(), p.cm = cm.contiguous();
  return p;
}

// The block of p's synapse tensors, shaped (rows, columns) = (pre, post) forward or (post, pre) backward.
Block block_of(const Params& p, int64_t neurons, bool post_major) {
  const int64_t rows = p.sigma.size(0), columns = p.sigma.size(1);
  return Block{neurons, post_major ? columns : rows, post_major ? rows : columns,
               p.pre_index.defined() ? p.pre_index.data_ptr<int64_t>() : nullptr,
               p.post_index.defined() ? p.post_index.data_ptr<int64_t>() : nullptr};
}

// Forward over (time, batch): states (time, batch, N); with trace, (batch, time, unfolds, 3, N)
// holding the state entering every unfold and the two synapse sums it produced.
template <typename T>
void forward_impl(const torch::Tensor& v0, const torch::Tensor& sn, const torch::Tensor& sc,
                  const torch::Tensor& h, const torch::Tensor& keep, const Params& p, int64_t unfolds,
                  double epsilon, torch::Tensor& states, torch::Tensor* trace) {
  const int64_t steps = sn.size(0), batch = sn.size(1), N = sn.size(2);
  const Block B = block_of(p, N, false);
  const T *gleak = p.gleak.data_ptr<T>(), *vleak = p.vleak.data_ptr<T>(), *cm = p.cm.data_ptr<T>();
  const T *sigma = p.sigma.data_ptr<T>(), *mu = p.mu.data_ptr<T>(), *w = p.w.data_ptr<T>(),
          *we = p.we.data_ptr<T>();
  const T *sn_p = sn.data_ptr<T>(), *sc_p = sc.data_ptr<T>(), *h_p = h.data_ptr<T>(), *v0_p = v0.data_ptr<T>();
  const T* keep_p = keep.defined() ? keep.data_ptr<T>() : nullptr;
  T* out = states.data_ptr<T>();
  T* tr = trace ? trace->data_ptr<T>() : nullptr;
  const T eps = static_cast<T>(epsilon);
  const int64_t groups = (batch + kRows - 1) / kRows;
  const int64_t grain = (batch * B.pre * B.post < (1 << 16)) ? groups : 1;  // tiny problems stay on one thread
  at::parallel_for(0, groups, grain, [&](int64_t begin, int64_t end) {
    std::vector<std::vector<T>> v(kRows, std::vector<T>(N)), num = v, cond = v, cm_t = v;
    std::vector<SumsScratch<T>> scratch(kRows, SumsScratch<T>(B));
    for_row_groups(begin * kRows, std::min(end * kRows, batch), [&](auto rows, int64_t b0) {
      constexpr int R = decltype(rows)::value;
      const T* v_in[R];
      T *num_out[R], *cond_out[R];
      for (int r = 0; r < R; ++r) {
        std::copy(v0_p + (b0 + r) * N, v0_p + (b0 + r + 1) * N, v[r].begin());
        v_in[r] = v[r].data(), num_out[r] = num[r].data(), cond_out[r] = cond[r].data();
      }
      for (int64_t t = 0; t < steps; ++t) {
        for (int r = 0; r < R; ++r) {
          const int64_t tb = t * batch + b0 + r;
          if (keep_p && keep_p[tb] == T(0)) std::fill(v[r].begin(), v[r].end(), T(0));
          for (int64_t i = 0; i < N; ++i) cm_t[r][i] = cm[i] / h_p[tb];
        }
        for (int64_t u = 0; u < unfolds; ++u) {
          block_sums<T, R>(B, v_in, sigma, mu, w, we, scratch.data(), num_out, cond_out);
          for (int r = 0; r < R; ++r) {
            const int64_t tb = t * batch + b0 + r;
            const T *sn_t = sn_p + tb * N, *sc_t = sc_p + tb * N;
            if (tr) {
              T* slot = tr + (((b0 + r) * steps + t) * unfolds + u) * 3 * N;
              std::copy(v[r].begin(), v[r].end(), slot);
              std::copy(num[r].begin(), num[r].end(), slot + N);
              std::copy(cond[r].begin(), cond[r].end(), slot + 2 * N);
            }
            for (int64_t i = 0; i < N; ++i) {
              v[r][i] = (cm_t[r][i] * v[r][i] + gleak[i] * vleak[i] + num[r][i] + sn_t[i]) /
                        (cm_t[r][i] + gleak[i] + cond[r][i] + sc_t[i] + eps);
            }
          }
        }
        for (int r = 0; r < R; ++r) std::copy(v[r].begin(), v[r].end(), out + (t * batch + b0 + r) * N);
      }
    });
  });
}

std::vector<torch::Tensor> forward(torch::Tensor v0, torch::Tensor sn, torch::Tensor sc, torch::Tensor h,
                                   c10::optional<torch::Tensor> keep, torch::Tensor gleak, torch::Tensor vleak,
                                   torch::Tensor cm, torch::Tensor sigma, torch::Tensor mu, torch::Tensor w,
                                   torch::Tensor we, c10::optional<torch::Tensor> pre_index,
                                   c10::optional<torch::Tensor> post_index, int64_t unfolds, double epsilon,
                                   bool with_trace) {
  Params p = contiguous_params(gleak, vleak, cm, sigma, mu, w, we, pre_index, post_index);
  v0 = v0.contiguous(), sn = sn.contiguous(), sc = sc.contiguous(), h = h.contiguous();
  const int64_t steps = sn.size(0), batch = sn.size(1), N = sn.size(2);
  auto states = torch::empty({steps, batch, N}, sn.options());
  torch::Tensor trace = with_trace ? torch::empty({batch, steps, unfolds, 3, N}, sn.options()) : torch::Tensor();
  torch::Tensor keep_t = keep.has_value() ? keep->contiguous() : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(sn.scalar_type(), "ltc_native_forward", [&] {
    forward_impl<scalar_t>(v0, sn, sc, h, keep_t, p, unfolds, epsilon, states, with_trace ? &trace : nullptr);
  });
  return with_trace ? std::vector<torch::Tensor>{states, trace} : std::vector<torch::Tensor>{states};
}

// Working memory of one batch row in the backward pass.
template <typename T>
struct Row {
  std::vector<T> g, g_top, g_bottom, g_pre, cm_t, g_cm_t, gathered, block_g_pre;
  Row(int64_t N, int64_t pre, int64_t inputs)  // inputs: pre-synaptic population size (N for recurrent synapses)
      : g(N), g_top(N), g_bottom(N), g_pre(inputs), cm_t(N), g_cm_t(N), gathered(pre), block_g_pre(pre) {}
};

// Gradients of one fused update's synapse sums for R batch rows at once: recompute s, push g_num = g_top,
// g_cond = g_bottom back to the pre-synaptic values (g_pre) and into the parameter gradients G.
template <typename T, int R>
void synapse_vjp(const Block& B, const T* const* v, Row<T>* rows, const T* sigma, const T* mu, const T* w,
                 const T* we, T* G_sigma, T* G_mu, T* G_w, T* G_we) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const int64_t K = B.pre;
  const T* x[R];
  T* g_pre[R];  // the block's pre-synaptic gradients
  for (int r = 0; r < R; ++r) {
    x[r] = pre_values(B, v[r], rows[r].gathered.data());
    g_pre[r] = B.pre_index ? rows[r].block_g_pre.data() : rows[r].g_pre.data();
    std::fill(g_pre[r], g_pre[r] + K, T(0));
  }
  for (int64_t i = 0; i < B.post; ++i) {
    const int64_t neuron = B.post_index ? B.post_index[i] : i, row = i * K;
    T gt[R], gb[R];
    for (int r = 0; r < R; ++r) {
      gt[r] = rows[r].g_top[neuron];
      gb[r] = rows[r].g_bottom[neuron];
    }
    for (int64_t k = 0; k < K; k += W) {
      const int64_t n = std::min(W, K - k), at = row + k;
      const V m = load(mu + at, n), sg = load(sigma + at, n), ww = load(w + at, n), wwe = load(we + at, n);
      V a_sigma(T(0)), a_mu(T(0)), a_w(T(0)), a_we(T(0));
      for (int r = 0; r < R; ++r) {
        const V top(gt[r]), bottom(gb[r]);
        const V d = load(x[r] + k, n) - m;
        const V s = sigmoid(d * sg);
        const V gz = (top * wwe + bottom * ww) * s * (V(T(1)) - s);
        const V gs = gz * sg;
        store(load(g_pre[r] + k, n) + gs, g_pre[r] + k, n);
        a_sigma = at::vec::fmadd(gz, d, a_sigma);
        a_mu = a_mu + gs;
        a_w = at::vec::fmadd(s, bottom, a_w);
        a_we = at::vec::fmadd(s, top, a_we);
      }
      store(load(G_sigma + at, n) + a_sigma, G_sigma + at, n);
      store(load(G_mu + at, n) - a_mu, G_mu + at, n);
      store(load(G_w + at, n) + a_w, G_w + at, n);
      store(load(G_we + at, n) + a_we, G_we + at, n);
    }
  }
  if (B.pre_index) {
    for (int r = 0; r < R; ++r) {
      std::fill(rows[r].g_pre.begin(), rows[r].g_pre.end(), T(0));
      for (int64_t q = 0; q < K; ++q) rows[r].g_pre[B.pre_index[q]] += g_pre[r][q];
    }
  }
}

// Sums the per-thread gradient buffers into the output tensors, which lie back to back in them.
template <typename T, typename It>
void sum_partials(const std::vector<std::vector<T>>& partial, It first, It last) {
  int64_t offset = 0;
  for (It out = first; out != last; ++out) {
    T* dst = out->template data_ptr<T>();
    for (int64_t n = 0; n < out->numel(); ++n) {
      T total = T(0);
      for (const auto& acc : partial) total += acc[offset + n];
      dst[n] = total;
    }
    offset += out->numel();
  }
}

// What every row of the backward pass reads and writes.
template <typename T>
struct Backward {
  Block B;
  int64_t steps, batch, N, unfolds;
  T eps;
  const T *gleak, *vleak, *cm, *sigma, *mu, *w, *we, *g_states, *trace, *sn, *sc, *h, *keep;
  T *g_v0, *g_sn, *g_sc, *g_h;
};

// The backward pass of R batch rows b0 .. b0 + R - 1 through the whole sequence; parameter
// gradients accumulate into acc (gleak, vleak, cm: N each; sigma, mu, w, we: the block's size each).
template <typename T, int R>
void backward_rows(const Backward<T>& c, int64_t b0, Row<T>* rows, T* acc) {
  const int64_t N = c.N, S = c.B.pre * c.B.post;
  T *G_gleak = acc, *G_vleak = acc + N, *G_cm = acc + 2 * N;
  T *G_sigma = acc + 3 * N, *G_mu = G_sigma + S, *G_w = G_mu + S, *G_we = G_w + S;
  for (int r = 0; r < R; ++r) std::fill(rows[r].g.begin(), rows[r].g.end(), T(0));
  for (int64_t t = c.steps - 1; t >= 0; --t) {
    for (int r = 0; r < R; ++r) {
      const int64_t tb = t * c.batch + b0 + r;
      Row<T>& row = rows[r];
      for (int64_t i = 0; i < N; ++i) {
        row.g[i] += c.g_states[tb * N + i];
        row.cm_t[i] = c.cm[i] / c.h[tb];
        row.g_cm_t[i] = T(0);
      }
      std::fill(c.g_sn + tb * N, c.g_sn + (tb + 1) * N, T(0));
      std::fill(c.g_sc + tb * N, c.g_sc + (tb + 1) * N, T(0));
    }
    for (int64_t u = c.unfolds - 1; u >= 0; --u) {
      const T* v[R];
      for (int r = 0; r < R; ++r) {
        const int64_t tb = t * c.batch + b0 + r;
        const T* slot = c.trace + (((b0 + r) * c.steps + t) * c.unfolds + u) * 3 * N;
        const T *num = slot + N, *cond = slot + 2 * N, *sn_t = c.sn + tb * N, *sc_t = c.sc + tb * N;
        T *gsn = c.g_sn + tb * N, *gsc = c.g_sc + tb * N;
        Row<T>& row = rows[r];
        v[r] = slot;
        for (int64_t i = 0; i < N; ++i) {
          const T bottom = row.cm_t[i] + c.gleak[i] + cond[i] + sc_t[i] + c.eps;
          const T v_out = (row.cm_t[i] * slot[i] + c.gleak[i] * c.vleak[i] + num[i] + sn_t[i]) / bottom;
          row.g_top[i] = row.g[i] / bottom;
          row.g_bottom[i] = -row.g_top[i] * v_out;
          gsn[i] += row.g_top[i];
          gsc[i] += row.g_bottom[i];
          G_gleak[i] += row.g_top[i] * c.vleak[i] + row.g_bottom[i];
          G_vleak[i] += row.g_top[i] * c.gleak[i];
          row.g_cm_t[i] += row.g_top[i] * slot[i] + row.g_bottom[i];
        }
      }
      synapse_vjp<T, R>(c.B, v, rows, c.sigma, c.mu, c.w, c.we, G_sigma, G_mu, G_w, G_we);
      for (int r = 0; r < R; ++r) {
        for (int64_t i = 0; i < N; ++i) rows[r].g[i] = rows[r].g_pre[i] + rows[r].g_top[i] * rows[r].cm_t[i];
      }
    }
    for (int r = 0; r < R; ++r) {
      const int64_t tb = t * c.batch + b0 + r;
      Row<T>& row = rows[r];
      T gh = T(0);
      for (int64_t i = 0; i < N; ++i) {
        gh -= row.g_cm_t[i] * row.cm_t[i] / c.h[tb];
        G_cm[i] += row.g_cm_t[i] / c.h[tb];
      }
      c.g_h[tb] = gh;
      if (c.keep && c.keep[tb] == T(0)) std::fill(row.g.begin(), row.g.end(), T(0));
    }
  }
  for (int r = 0; r < R; ++r) std::copy(rows[r].g.begin(), rows[r].g.end(), c.g_v0 + (b0 + r) * N);
}

template <typename T>
void backward_impl(const torch::Tensor& g_states, const torch::Tensor& trace, const torch::Tensor& sn,
                   const torch::Tensor& sc, const torch::Tensor& h, const torch::Tensor& keep, const Params& p,
                   int64_t unfolds, double epsilon, std::vector<torch::Tensor>& out) {
  const int64_t steps = sn.size(0), batch = sn.size(1), N = sn.size(2);
  const Block B = block_of(p, N, true);
  const int64_t S = B.pre * B.post;
  const Backward<T> c{B, steps, batch, N, unfolds, static_cast<T>(epsilon),
                      p.gleak.data_ptr<T>(), p.vleak.data_ptr<T>(), p.cm.data_ptr<T>(), p.sigma.data_ptr<T>(),
                      p.mu.data_ptr<T>(), p.w.data_ptr<T>(), p.we.data_ptr<T>(), g_states.data_ptr<T>(),
                      trace.data_ptr<T>(), sn.data_ptr<T>(), sc.data_ptr<T>(), h.data_ptr<T>(),
                      keep.defined() ? keep.data_ptr<T>() : nullptr, out[0].data_ptr<T>(), out[1].data_ptr<T>(),
                      out[2].data_ptr<T>(), out[3].data_ptr<T>()};
  // Per-thread parameter gradients, summed at the end.
  const int64_t threads = at::get_num_threads();
  std::vector<std::vector<T>> partial(threads, std::vector<T>(3 * N + 4 * S, T(0)));
  const int64_t groups = (batch + kRows - 1) / kRows;
  const int64_t grain = (batch * S < (1 << 16)) ? groups : 1;
  at::parallel_for(0, groups, grain, [&](int64_t begin, int64_t end) {
    T* acc = partial[at::get_thread_num()].data();
    std::vector<Row<T>> rows(kRows, Row<T>(N, B.pre, N));
    for_row_groups(begin * kRows, std::min(end * kRows, batch), [&](auto group, int64_t b0) {
      backward_rows<T, decltype(group)::value>(c, b0, rows.data(), acc);
    });
  });
  sum_partials(partial, out.begin() + 4, out.end());
}

// Returns the gradients w.r.t. v0, sn, sc, h, gleak, vleak, cm, sigma, mu, w, we (the block, post-major).
std::vector<torch::Tensor> backward(torch::Tensor g_states, torch::Tensor trace, torch::Tensor sn,
                                    torch::Tensor sc, torch::Tensor h, c10::optional<torch::Tensor> keep,
                                    torch::Tensor gleak, torch::Tensor vleak, torch::Tensor cm, torch::Tensor sigma,
                                    torch::Tensor mu, torch::Tensor w, torch::Tensor we,
                                    c10::optional<torch::Tensor> pre_index, c10::optional<torch::Tensor> post_index,
                                    int64_t unfolds, double epsilon) {
  Params p = contiguous_params(gleak, vleak, cm, sigma, mu, w, we, pre_index, post_index);
  g_states = g_states.contiguous(), trace = trace.contiguous(), sn = sn.contiguous(), sc = sc.contiguous();
  h = h.contiguous();
  std::vector<torch::Tensor> out;  // contiguous, as the kernel writes them
  for (const auto& like : {g_states[0], sn, sc, h, p.gleak, p.vleak, p.cm, p.sigma, p.mu, p.w, p.we}) {
    out.push_back(torch::empty(like.sizes(), like.options()));
  }
  torch::Tensor keep_t = keep.has_value() ? keep->contiguous() : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(sn.scalar_type(), "ltc_native_backward", [&] {
    backward_impl<scalar_t>(g_states, trace, sn, sc, h, keep_t, p, unfolds, epsilon, out);
  });
  return out;
}

// The sensory drive of many rows at once (all time steps of a sequence): x (rows, inputs) through
// the (pre, post) sensory block gives num and cond (rows, N).
std::vector<torch::Tensor> sensory_forward(torch::Tensor x, torch::Tensor sigma, torch::Tensor mu, torch::Tensor w,
                                           torch::Tensor we, c10::optional<torch::Tensor> pre_index,
                                           c10::optional<torch::Tensor> post_index, int64_t neurons) {
  Params p = synapse_params(sigma, mu, w, we, pre_index, post_index);
  x = x.contiguous();
  const int64_t rows = x.size(0), inputs = x.size(1);
  auto num = torch::empty({rows, neurons}, x.options()), cond = torch::empty({rows, neurons}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ltc_native_sensory_forward", [&] {
    using T = scalar_t;
    const Block B = block_of(p, neurons, false);
    const T *xs = x.data_ptr<T>(), *sg = p.sigma.data_ptr<T>(), *m = p.mu.data_ptr<T>(), *ww = p.w.data_ptr<T>(),
            *wwe = p.we.data_ptr<T>();
    T *num_p = num.data_ptr<T>(), *cond_p = cond.data_ptr<T>();
    const int64_t groups = (rows + kRows - 1) / kRows;
    at::parallel_for(0, groups, 16, [&](int64_t begin, int64_t end) {
      std::vector<SumsScratch<T>> scratch(kRows, SumsScratch<T>(B));
      for_row_groups(begin * kRows, std::min(end * kRows, rows), [&](auto group, int64_t r0) {
        constexpr int R = decltype(group)::value;
        const T* v[R];
        T *num_out[R], *cond_out[R];
        for (int r = 0; r < R; ++r) {
          v[r] = xs + (r0 + r) * inputs, num_out[r] = num_p + (r0 + r) * neurons;
          cond_out[r] = cond_p + (r0 + r) * neurons;
        }
        block_sums<T, R>(B, v, sg, m, ww, wwe, scratch.data(), num_out, cond_out);
      });
    });
  });
  return {num, cond};
}

// Its backward: the gradients w.r.t. x and the block's sigma, mu, w, we (post-major, as given).
std::vector<torch::Tensor> sensory_backward(torch::Tensor x, torch::Tensor g_num, torch::Tensor g_cond,
                                            torch::Tensor sigma, torch::Tensor mu, torch::Tensor w, torch::Tensor we,
                                            c10::optional<torch::Tensor> pre_index,
                                            c10::optional<torch::Tensor> post_index) {
  Params p = synapse_params(sigma, mu, w, we, pre_index, post_index);
  x = x.contiguous(), g_num = g_num.contiguous(), g_cond = g_cond.contiguous();
  const int64_t rows = x.size(0), inputs = x.size(1), neurons = g_num.size(1);
  std::vector<torch::Tensor> out{torch::empty_like(x)};
  for (const auto& like : {p.sigma, p.mu, p.w, p.we}) out.push_back(torch::empty(like.sizes(), like.options()));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ltc_native_sensory_backward", [&] {
    using T = scalar_t;
    const Block B = block_of(p, neurons, true);
    const int64_t S = B.pre * B.post;
    const T *xs = x.data_ptr<T>(), *gn = g_num.data_ptr<T>(), *gc = g_cond.data_ptr<T>();
    T* g_x = out[0].data_ptr<T>();
    std::vector<std::vector<T>> partial(at::get_num_threads(), std::vector<T>(4 * S, T(0)));
    const int64_t groups = (rows + kRows - 1) / kRows;
    at::parallel_for(0, groups, 16, [&](int64_t begin, int64_t end) {
      T* acc = partial[at::get_thread_num()].data();
      std::vector<Row<T>> row(kRows, Row<T>(neurons, B.pre, inputs));
      for_row_groups(begin * kRows, std::min(end * kRows, rows), [&](auto group, int64_t r0) {
        constexpr int R = decltype(group)::value;
        const T* v[R];
        for (int r = 0; r < R; ++r) {
          v[r] = xs + (r0 + r) * inputs;
          std::copy(gn + (r0 + r) * neurons, gn + (r0 + r + 1) * neurons, row[r].g_top.begin());
          std::copy(gc + (r0 + r) * neurons, gc + (r0 + r + 1) * neurons, row[r].g_bottom.begin());
        }
        synapse_vjp<T, R>(B, v, row.data(), p.sigma.data_ptr<T>(), p.mu.data_ptr<T>(), p.w.data_ptr<T>(),
                          p.we.data_ptr<T>(), acc, acc + S, acc + 2 * S, acc + 3 * S);
        for (int r = 0; r < R; ++r) std::copy(row[r].g_pre.begin(), row[r].g_pre.end(), g_x + (r0 + r) * inputs);
      });
    });
    sum_partials(partial, out.begin() + 1, out.end());
  });
  return out;
}

// softplus(x) = log(1 + exp(x)), x itself above 20 (torch.nn.functional.softplus's threshold).
template <typename T>
void positive(const T* raw, const T* mask, int64_t n, bool implicit, T* out) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  int64_t k = 0;
  for (; k + W <= n; k += W) {
    V x = V::loadu(raw + k);
    V y = implicit ? V::blendv(x.exp().log1p(), x, x > V(T(20))) : x;
    (mask ? y * V::loadu(mask + k) : y).store(out + k);
  }
  for (; k < n; ++k) {
    T y = implicit ? (raw[k] > T(20) ? raw[k] : std::log1p(std::exp(raw[k]))) : raw[k];
    out[k] = mask ? y * mask[k] : y;
  }
}

// The positive, masked weights and w * erev of a (pre, post) synapse population.
template <typename T>
void prepare_synapses(const torch::Tensor& w, const torch::Tensor& erev, const torch::Tensor& mask, bool implicit,
                      std::vector<T>& w_out, std::vector<T>& we_out) {
  const int64_t n = w.numel();
  w_out.resize(n);
  we_out.resize(n);
  positive(w.data_ptr<T>(), mask.data_ptr<T>(), n, implicit, w_out.data());
  const T* e = erev.data_ptr<T>();
  for (int64_t k = 0; k < n; ++k) we_out[k] = w_out[k] * e[k];
}

template <typename T>
void inference_impl(const torch::Tensor& x, const torch::Tensor& v0, const torch::Tensor& dt,
                    const std::vector<torch::Tensor>& t, bool implicit, int64_t unfolds, double epsilon,
                    torch::Tensor& outputs, torch::Tensor& states) {
  // t: the fields of ltc_fast.CellTensors in order: gleak, vleak, cm, sigma, mu, w, erev, sensory sigma, mu, w,
  // erev, sparsity mask, sensory sparsity mask, input_w, input_b, output_w, output_b (the last four optional).
  const int64_t batch = x.size(0), I = x.size(1), N = v0.size(1), O = outputs.size(1);
  std::vector<T> gleak(N), cm(N), w, we, sw, swe;
  positive(t[0].data_ptr<T>(), static_cast<const T*>(nullptr), N, implicit, gleak.data());
  positive(t[2].data_ptr<T>(), static_cast<const T*>(nullptr), N, implicit, cm.data());
  prepare_synapses<T>(t[5], t[6], t[11], implicit, w, we);
  prepare_synapses<T>(t[9], t[10], t[12], implicit, sw, swe);
  const T *vleak = t[1].data_ptr<T>(), *sigma = t[3].data_ptr<T>(), *mu = t[4].data_ptr<T>();
  const T *s_sigma = t[7].data_ptr<T>(), *s_mu = t[8].data_ptr<T>();
  const T* in_w = t[13].defined() ? t[13].data_ptr<T>() : nullptr;
  const T* in_b = t[14].defined() ? t[14].data_ptr<T>() : nullptr;
  const T* out_w = t[15].defined() ? t[15].data_ptr<T>() : nullptr;
  const T* out_b = t[16].defined() ? t[16].data_ptr<T>() : nullptr;
  const T* dt_p = dt.defined() ? dt.data_ptr<T>() : nullptr;
  const T eps = static_cast<T>(epsilon);
  std::vector<T> inputs(I), sn(N), sc(N), num(N), cond(N), cm_t(N), v(N);
  for (int64_t b = 0; b < batch; ++b) {
    const T* xb = x.data_ptr<T>() + b * I;
    for (int64_t j = 0; j < I; ++j) inputs[j] = (in_w ? xb[j] * in_w[j] : xb[j]) + (in_b ? in_b[j] : T(0));
    const T* in[1] = {inputs.data()};
    T *sn_out[1] = {sn.data()}, *sc_out[1] = {sc.data()}, *num_out[1] = {num.data()}, *cond_out[1] = {cond.data()};
    synapse_sums_pre_major<T, 1>(I, N, in, s_sigma, s_mu, sw.data(), swe.data(), sn_out, sc_out);
    const T h = (dt_p ? dt_p[b] : T(1)) / static_cast<T>(unfolds);
    for (int64_t i = 0; i < N; ++i) cm_t[i] = cm[i] / h;
    std::copy(v0.data_ptr<T>() + b * N, v0.data_ptr<T>() + (b + 1) * N, v.begin());
    for (int64_t u = 0; u < unfolds; ++u) {
      const T* state[1] = {v.data()};
      synapse_sums_pre_major<T, 1>(N, N, state, sigma, mu, w.data(), we.data(), num_out, cond_out);
      for (int64_t i = 0; i < N; ++i) {
        v[i] = (cm_t[i] * v[i] + gleak[i] * vleak[i] + num[i] + sn[i]) /
               (cm_t[i] + gleak[i] + cond[i] + sc[i] + eps);
      }
    }
    std::copy(v.begin(), v.end(), states.data_ptr<T>() + b * N);
    T* out = outputs.data_ptr<T>() + b * O;
    for (int64_t i = 0; i < O; ++i) out[i] = (out_w ? v[i] * out_w[i] : v[i]) + (out_b ? out_b[i] : T(0));
  }
}

// One whole cell step without autograd, from the cell's raw parameters (dense, pre-synaptic-major;
// absent synapses are masked): batch-1 inference in one call. Returns (outputs, new state).
std::vector<torch::Tensor> inference(torch::Tensor x, torch::Tensor v0, c10::optional<torch::Tensor> dt,
                                     std::vector<c10::optional<torch::Tensor>> tensors, bool implicit,
                                     int64_t unfolds, double epsilon, int64_t output_size) {
  std::vector<torch::Tensor> t;
  for (const auto& tensor : tensors) t.push_back(tensor.has_value() ? tensor->contiguous() : torch::Tensor());
  x = x.contiguous(), v0 = v0.contiguous();
  torch::Tensor dt_t = dt.has_value() ? dt->contiguous() : torch::Tensor();
  auto outputs = torch::empty({x.size(0), output_size}, v0.options());
  auto states = torch::empty_like(v0);
  AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "ltc_native_inference", [&] {
    inference_impl<scalar_t>(x, v0, dt_t, t, implicit, unfolds, epsilon, outputs, states);
  });
  return {outputs, states};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("vector_width", [] { return static_cast<int64_t>(Vectorized<float>::size()); },
        "float32 lanes of the vector instructions the kernel was built for");
  m.def("forward", &forward, "Fused-solver LTC sequence forward (states, optional trace)");
  m.def("inference", &inference, "A whole batch-1 cell step from the raw parameters (no autograd)");
  m.def("sensory_forward", &sensory_forward, "Sensory synapse sums of many rows (all time steps)");
  m.def("sensory_backward", &sensory_backward, "Backward of sensory_forward (recomputing the activations)");
  m.def("backward", &backward, "Fused-solver LTC sequence backward (recomputing synapse activations)");
}
