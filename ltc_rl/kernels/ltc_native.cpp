// Fused-solver LTC, forward and analytic backward, as one native CPU kernel.
//
// The same function as ltc_fast.step / step_backward with solver "fused" (see native.py): each
// thread walks groups of kRows batch rows through the whole sequence in lockstep, the synapse
// activations are evaluated as vectors (float32: polynomial 2^y, see logistic), and the backward
// pass recomputes them instead of storing them: it keeps, per unfold, only the state entering it and
// the denominator of its update.
//
// Recurrent synapses are compacted to the neurons that take part: the pre-synaptic neurons with
// outgoing synapses (pre_index) and the post-synaptic ones with incoming synapses (post_index),
// both all neurons (no index) for a fully connected wiring. Absent synapses inside that block
// have zero weight. Both passes take the block (pre, post) and copy it into panels (see Synapses),
// which they stream through in order: the forward pass the (pre, post) matrix, vectorised over
// post-synaptic neurons; the backward pass its transpose, vectorised over pre-synaptic neurons;
// neither needs a horizontal reduction.

#include <torch/extension.h>
#include <torch/library.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <atomic>
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

// logistic(y) = 1 / (1 + 2^y) = sigmoid(-y ln 2): the synapse activation sigmoid(sigma (x - mu)), given
// y = slope (mu - x) with slope = sigma log2(e) (the kernels keep that product per synapse, which saves
// a multiplication and lets the exponent split into integer and fraction by a subtraction).
// Generic: ATen's exp2 (Sleef for float64) and a division.
template <typename T>
inline Vectorized<T> logistic(const Vectorized<T>& y) {
  return Vectorized<T>(T(1)) / (Vectorized<T>(T(1)) + y.exp2());
}

// softplus(x) = log(1 + e^x), x itself above 20 (torch.nn.functional.softplus's threshold): the positive
// weights of implicit parameter constraints. Generic: ATen's exp and log1p.
template <typename T>
inline Vectorized<T> softplus(const Vectorized<T>& x) {
  return Vectorized<T>::blendv(x.exp().log1p(), x, x > Vectorized<T>(T(20)));
}

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
// float32 with AVX512 or AVX2: both from polynomials, in ATen's vector operations except for the three
// that differ between the instruction sets.
namespace fast {
using V = Vectorized<float>;
#if defined(CPU_CAPABILITY_AVX512)
// y within [-bound, bound]; a NaN y stays NaN (min and max return their second operand for NaN, and
// cost less than ATen's NaN-propagating minimum and maximum).
inline V clamp(const V& y, float bound) {
  return _mm512_max_ps(_mm512_set1_ps(-bound), _mm512_min_ps(_mm512_set1_ps(bound), y));
}
inline V times_pow2(const V& p, const V& n) { return _mm512_scalef_ps(p, n); }
inline V reciprocal_estimate(const V& x) { return _mm512_rcp14_ps(x); }
#else
inline V clamp(const V& y, float bound) {
  return _mm256_max_ps(_mm256_set1_ps(-bound), _mm256_min_ps(_mm256_set1_ps(bound), y));
}
inline V times_pow2(const V& p, const V& n) {  // |n| <= 115 (see exp2): 2^n is a normal float built from its bits
  const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23)));
}
inline V reciprocal_estimate(const V& x) { return _mm256_rcp_ps(x); }
#endif

// 2^y, y clamped to [-115, 115] first (2^y and 1 / (1 + 2^y) stay normal floats): 2^n 2^f with n = round(y)
// and f = y - n in [-1/2, 1/2], 2^f a degree-4 minimax polynomial (relative error < 3e-6, about 25 ulp:
// the accuracy class of ATen's own fast exp_u20; a degree more costs 5-8% of the training step).
inline V exp2(const V& y) {
  const V x = clamp(y, 115.f);
  const V n = x.round();
  const V f = x - n;
  V p = at::vec::fmadd(V(0.00958285294f), f, V(0.0559064262f));
  p = at::vec::fmadd(p, f, V(0.240240991f));
  p = at::vec::fmadd(p, f, V(0.693124175f));
  return times_pow2(at::vec::fmadd(p, f, V(1.f)), n);
}

// 1 / x for x >= 1: the hardware estimate refined by one Newton step.
inline V reciprocal(const V& x) {
  const V estimate = reciprocal_estimate(x);
  return estimate * at::vec::fnmadd(x, estimate, V(2.f));
}
}  // namespace fast

// In 13 vector instructions.
template <>
inline Vectorized<float> logistic(const Vectorized<float>& y) {
  return fast::reciprocal(fast::exp2(y) + Vectorized<float>(1.f));
}

// max(x, 0) + log1p(u) with u = e^-|x| in (0, 1], log1p(u) = 2 atanh(t) for t = u / (2 + u) in (0, 1/3],
// atanh(t) / t a degree-3 minimax polynomial in t^2 (relative error < 2e-7): within 3e-6 plus |x| 6e-8
// (the exponent's rounding) overall. Above 20 that is x to the float (log1p(u) < 3e-9).
template <>
inline Vectorized<float> softplus(const Vectorized<float>& x) {
  using V = Vectorized<float>;
  const V u = fast::exp2(x.abs() * V(-1.44269504f));
  const V t = u * fast::reciprocal(u + V(2.f));
  const V q = t * t;
  V p = at::vec::fmadd(V(0.169917807f), q, V(0.198179841f));
  p = at::vec::fmadd(p, q, V(0.333367407f));
  p = at::vec::fmadd(p, q, V(1.f));
  return at::vec::maximum(x, V(0.f)) + (t + t) * p;
}
#endif

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

// The parameters of a synapse population as a (rows, columns) matrix that the kernels walk vectorised
// over columns: element (row, column) lies at row * row_stride + column * column_stride, for a column
// at the start of a vector. Row-major: (columns, 1). Panels: (W, rows), the (ceil(columns / W), rows, W)
// layout of to_panels, in which a walk down the rows for one vector of columns streams through memory
// (row-major, it strides across it, and the strided lines fall into few cache sets and evict each other).
template <typename T>
struct Synapses {
  const T *sigma, *slope, *mu, *w, *we;  // slope = sigma log2(e)
  int64_t rows, columns, row_stride, column_stride;
  int64_t at(int64_t row, int64_t column) const { return row * row_stride + column * column_stride; }
};

// Where element (row, column) of a (rows, columns) matrix lies in m: row-major, or, if transposed, in the
// row-major (columns, rows) m of its transpose.
inline int64_t element(int64_t row, int64_t column, int64_t rows, int64_t columns, bool transposed) {
  return transposed ? column * rows + row : row * columns + column;
}

// A (rows, columns) matrix, stored in m as `element` says, as zero-padded panels, and back.
template <typename T>
std::vector<T> to_panels(const T* m, int64_t rows, int64_t columns, bool transposed) {
  constexpr int64_t W = Vectorized<T>::size();
  std::vector<T> panels((columns + W - 1) / W * rows * W, T(0));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < columns; ++c) {
      panels[(c / W) * rows * W + r * W + c % W] = m[element(r, c, rows, columns, transposed)];
    }
  }
  return panels;
}

template <typename T>
void from_panels(const T* panels, int64_t rows, int64_t columns, bool transposed, T* m) {
  constexpr int64_t W = Vectorized<T>::size();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < columns; ++c) {
      m[element(r, c, rows, columns, transposed)] = panels[(c / W) * rows * W + r * W + c % W];
    }
  }
}

constexpr double kLog2E = 1.4426950408889634;

// sigma log2(e) of n synapses.
template <typename T>
std::vector<T> slopes(const T* sigma, int64_t n) {
  std::vector<T> slope(n);
  for (int64_t k = 0; k < n; ++k) slope[k] = sigma[k] * static_cast<T>(kLog2E);
  return slope;
}

// The parameter tensors of a synapse block, (pre, post) row-major, copied into panels: of the (pre, post)
// matrix for the forward pass, of its transpose (post, pre) for the backward pass.
template <typename T>
struct Panels {
  int64_t rows, columns;
  std::vector<T> sigma, slope, mu, w, we;
  Panels(const torch::Tensor& sg, const torch::Tensor& m, const torch::Tensor& ww, const torch::Tensor& wwe,
         bool transposed)
      : rows(sg.size(transposed ? 1 : 0)), columns(sg.size(transposed ? 0 : 1)),
        sigma(to_panels(sg.data_ptr<T>(), rows, columns, transposed)),
        slope(slopes(sigma.data(), static_cast<int64_t>(sigma.size()))),
        mu(to_panels(m.data_ptr<T>(), rows, columns, transposed)),
        w(to_panels(ww.data_ptr<T>(), rows, columns, transposed)),
        we(to_panels(wwe.data_ptr<T>(), rows, columns, transposed)) {}
  Synapses<T> view() const {
    return {sigma.data(), slope.data(), mu.data(), w.data(), we.data(), rows, columns, Vectorized<T>::size(), rows};
  }
};

// The length of one parameter array of S in panel layout.
template <typename T>
int64_t panel_size(const Synapses<T>& S) {
  constexpr int64_t W = Vectorized<T>::size();
  return (S.columns + W - 1) / W * W * S.rows;
}

// num[i] = sum_j we s, cond[i] = sum_j w s with s = sigmoid(sigma (x_j - mu)) = logistic(slope (mu - x_j)),
// for a population of (pre, post) = (rows, columns), vectorised over the post-synaptic neurons i, for R
// rows x at once (they share every parameter load).
template <typename T, int R>
void synapse_sums(const Synapses<T>& S, const T* const* x, T* const* num, T* const* cond) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  for (int64_t i = 0; i < S.columns; i += W) {
    const int64_t n = std::min(W, S.columns - i);
    V acc_num[R], acc_cond[R];
    for (int r = 0; r < R; ++r) acc_num[r] = acc_cond[r] = V(T(0));
    for (int64_t j = 0; j < S.rows; ++j) {
      const int64_t at = S.at(j, i);
      const V m = load(S.mu + at, n), sl = load(S.slope + at, n), ww = load(S.w + at, n), wwe = load(S.we + at, n);
      for (int r = 0; r < R; ++r) {
        const V s = logistic((m - V(x[r][j])) * sl);
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
void block_sums(const Block& B, const T* const* v, const Synapses<T>& S, SumsScratch<T>* scratch, T* const* num,
                T* const* cond) {
  const T* x[R];
  T *block_num[R], *block_cond[R];
  for (int r = 0; r < R; ++r) {
    x[r] = pre_values(B, v[r], scratch[r].gathered.data());
    block_num[r] = B.post_index ? scratch[r].block_num.data() : num[r];
    block_cond[r] = B.post_index ? scratch[r].block_cond.data() : cond[r];
  }
  synapse_sums<T, R>(S, x, block_num, block_cond);
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

// Walks rows [0, rows) in groups of kRows (the last, shorter group row by row) on the intra-op threads:
// body(std::integral_constant<int, R>, first_row, scratch), with scratch = make_scratch() once per thread.
// Groups are handed out one at a time, so a thread slowed down by other load on the machine takes fewer;
// `serial` keeps work too small to share on the calling thread.
template <typename MakeScratch, typename Body>
void parallel_row_groups(int64_t rows, bool serial, MakeScratch make_scratch, Body body) {
  const int64_t groups = (rows + kRows - 1) / kRows;
  const int64_t workers = serial ? 1 : std::min<int64_t>(at::get_num_threads(), groups);
  std::atomic<int64_t> next{0};
  auto work = [&](int64_t, int64_t) {
    auto scratch = make_scratch();
    for (int64_t group = next++; group < groups; group = next++) {
      const int64_t first = group * kRows;
      if (first + kRows <= rows) {
        body(std::integral_constant<int, kRows>(), first, scratch);
      } else {
        for (int64_t r = first; r < rows; ++r) body(std::integral_constant<int, 1>(), r, scratch);
      }
    }
  };
  if (workers <= 1) work(0, 1); else at::parallel_for(0, workers, 1, work);
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

// The block of p's (pre, post) synapse tensors.
Block block_of(const Params& p, int64_t neurons) {
  return Block{neurons, p.sigma.size(0), p.sigma.size(1), p.pre_index.defined() ? p.pre_index.data_ptr<int64_t>() : nullptr,
               p.post_index.defined() ? p.post_index.data_ptr<int64_t>() : nullptr};
}

// Runs body(i, n) over [0, N) one vector of n <= size() lanes at a time.
template <typename T, typename Body>
inline void for_vectors(int64_t N, Body body) {
  constexpr int64_t W = Vectorized<T>::size();
  for (int64_t i = 0; i < N; i += W) body(i, std::min(W, N - i));
}

// The parts of one row's fused update that stay fixed through a step's unfolds: cm_t = cm / h,
// top = gleak vleak + sn, bottom = cm_t + gleak + eps + sc.
template <typename T>
void step_constants(int64_t N, const T* cm, const T* gleak, const T* vleak, T h, const T* sn, const T* sc, T eps,
                    T* cm_t, T* top, T* bottom) {
  using V = Vectorized<T>;
  for_vectors<T>(N, [&](int64_t i, int64_t n) {
    const V c = load(cm + i, n) / V(h), g = load(gleak + i, n);
    store(c, cm_t + i, n);
    store(at::vec::fmadd(g, load(vleak + i, n), load(sn + i, n)), top + i, n);
    store(c + g + V(eps) + load(sc + i, n), bottom + i, n);
  });
}

// One unfold of one row's fused update: v = (cm_t v + top + num) / (bottom + cond), the denominators
// written to `denominator` unless it is null.
template <typename T>
void fused_update(int64_t N, const T* cm_t, const T* top, const T* bottom, const T* num, const T* cond, T* v,
                  T* denominator) {
  using V = Vectorized<T>;
  for_vectors<T>(N, [&](int64_t i, int64_t n) {
    const V d = load(bottom + i, n) + load(cond + i, n);
    store(at::vec::fmadd(load(cm_t + i, n), load(v + i, n), load(top + i, n) + load(num + i, n)) / d, v + i, n);
    if (denominator) store(d, denominator + i, n);
  });
}

// Forward over (time, batch): states (time, batch, N); with trace, (batch, time, unfolds, 2, N)
// holding the state entering every unfold and the denominator of its fused update.
template <typename T>
void forward_impl(const torch::Tensor& v0, const torch::Tensor& sn, const torch::Tensor& sc,
                  const torch::Tensor& h, const torch::Tensor& keep, const Params& p, int64_t unfolds,
                  double epsilon, torch::Tensor& states, torch::Tensor* trace) {
  const int64_t steps = sn.size(0), batch = sn.size(1), N = sn.size(2);
  const Block B = block_of(p, N);
  const T *gleak = p.gleak.data_ptr<T>(), *vleak = p.vleak.data_ptr<T>(), *cm = p.cm.data_ptr<T>();
  const Panels<T> panels(p.sigma, p.mu, p.w, p.we, false);
  const Synapses<T> S = panels.view();
  const T *sn_p = sn.data_ptr<T>(), *sc_p = sc.data_ptr<T>(), *h_p = h.data_ptr<T>(), *v0_p = v0.data_ptr<T>();
  const T* keep_p = keep.defined() ? keep.data_ptr<T>() : nullptr;
  T* out = states.data_ptr<T>();
  T* tr = trace ? trace->data_ptr<T>() : nullptr;
  const T eps = static_cast<T>(epsilon);
  const bool serial = batch * B.pre * B.post < (1 << 16);  // tiny problems stay on one thread
  struct Scratch {
    std::vector<std::vector<T>> v, num, cond, cm_t, top, bottom;
    std::vector<SumsScratch<T>> sums;
  };
  auto make_scratch = [&] {
    const std::vector<std::vector<T>> rows(kRows, std::vector<T>(N));
    return Scratch{rows, rows, rows, rows, rows, rows, std::vector<SumsScratch<T>>(kRows, SumsScratch<T>(B))};
  };
  parallel_row_groups(batch, serial, make_scratch, [&](auto rows, int64_t b0, Scratch& scratch) {
    auto &v = scratch.v, &num = scratch.num, &cond = scratch.cond, &cm_t = scratch.cm_t, &top = scratch.top,
         &bottom = scratch.bottom;
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
        step_constants(N, cm, gleak, vleak, h_p[tb], sn_p + tb * N, sc_p + tb * N, eps, cm_t[r].data(),
                       top[r].data(), bottom[r].data());
      }
      for (int64_t u = 0; u < unfolds; ++u) {
        block_sums<T, R>(B, v_in, S, scratch.sums.data(), num_out, cond_out);
        for (int r = 0; r < R; ++r) {
          T* slot = tr ? tr + (((b0 + r) * steps + t) * unfolds + u) * 2 * N : nullptr;
          if (slot) std::copy(v[r].begin(), v[r].end(), slot);
          fused_update(N, cm_t[r].data(), top[r].data(), bottom[r].data(), num[r].data(), cond[r].data(), v[r].data(),
                       slot ? slot + N : nullptr);
        }
      }
      for (int r = 0; r < R; ++r) std::copy(v[r].begin(), v[r].end(), out + (t * batch + b0 + r) * N);
    }
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
  torch::Tensor trace = with_trace ? torch::empty({batch, steps, unfolds, 2, N}, sn.options()) : torch::Tensor();
  torch::Tensor keep_t = keep.has_value() ? keep->contiguous() : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(sn.scalar_type(), "ltc_native_forward", [&] {
    forward_impl<scalar_t>(v0, sn, sc, h, keep_t, p, unfolds, epsilon, states, with_trace ? &trace : nullptr);
  });
  return with_trace ? std::vector<torch::Tensor>{states, trace} : std::vector<torch::Tensor>{states};
}

// Working memory of one batch row in the backward pass (g_sn, g_sc: the current step's).
template <typename T>
struct Row {
  std::vector<T> g, g_top, g_bottom, g_pre, cm_t, g_cm_t, g_sn, g_sc, gathered, block_g_pre;
  Row(int64_t N, int64_t pre, int64_t inputs)  // inputs: pre-synaptic population size (N for recurrent synapses)
      : g(N), g_top(N), g_bottom(N), g_pre(inputs), cm_t(N), g_cm_t(N), g_sn(N), g_sc(N), gathered(pre),
        block_g_pre(pre) {}
};

// Gradients of one fused update's synapse sums for R batch rows at once: recompute s, push g_num = g_top,
// g_cond = g_bottom back to the pre-synaptic values (g_pre) and into the parameter gradients G (four
// arrays of S's size and layout, back to back). S is the block post-synaptic-major, (rows, columns) =
// (post, pre): a vector of pre-synaptic neurons at a time walks through every post-synaptic one, so
// their g_pre stay in registers.
template <typename T, int R>
void synapse_vjp(const Block& B, const T* const* v, Row<T>* rows, const Synapses<T>& S, T* G) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const int64_t K = B.pre, size = panel_size(S);
  T *G_sigma = G, *G_mu = G + size, *G_w = G + 2 * size, *G_we = G + 3 * size;
  const T* x[R];
  T* g_pre[R];  // the block's pre-synaptic gradients
  for (int r = 0; r < R; ++r) {
    x[r] = pre_values(B, v[r], rows[r].gathered.data());
    g_pre[r] = B.pre_index ? rows[r].block_g_pre.data() : rows[r].g_pre.data();
  }
  for (int64_t k = 0; k < K; k += W) {
    const int64_t n = std::min(W, K - k);
    V xk[R], gk[R];
    for (int r = 0; r < R; ++r) xk[r] = load(x[r] + k, n), gk[r] = V(T(0));
    for (int64_t i = 0; i < B.post; ++i) {
      const int64_t neuron = B.post_index ? B.post_index[i] : i, at = S.at(i, k);
      const V m = load(S.mu + at, n), sg = load(S.sigma + at, n), sl = load(S.slope + at, n);
      const V ww = load(S.w + at, n), wwe = load(S.we + at, n);
      V a_sigma(T(0)), a_mu(T(0)), a_w(T(0)), a_we(T(0));
      for (int r = 0; r < R; ++r) {
        const V top(rows[r].g_top[neuron]), bottom(rows[r].g_bottom[neuron]);
        const V nd = m - xk[r];
        const V s = logistic(nd * sl);
        const V gz = at::vec::fmadd(top, wwe, bottom * ww) * at::vec::fnmadd(s, s, s);  // d(top, bottom)/dz
        const V gs = gz * sg;
        gk[r] = gk[r] + gs;
        a_sigma = at::vec::fnmadd(gz, nd, a_sigma);
        a_mu = a_mu + gs;
        a_w = at::vec::fmadd(s, bottom, a_w);
        a_we = at::vec::fmadd(s, top, a_we);
      }
      store(load(G_sigma + at, n) + a_sigma, G_sigma + at, n);
      store(load(G_mu + at, n) - a_mu, G_mu + at, n);
      store(load(G_w + at, n) + a_w, G_w + at, n);
      store(load(G_we + at, n) + a_we, G_we + at, n);
    }
    for (int r = 0; r < R; ++r) store(gk[r], g_pre[r] + k, n);
  }
  if (B.pre_index) {
    for (int r = 0; r < R; ++r) {
      std::fill(rows[r].g_pre.begin(), rows[r].g_pre.end(), T(0));
      for (int64_t q = 0; q < K; ++q) rows[r].g_pre[B.pre_index[q]] += g_pre[r][q];
    }
  }
}

// Sums the per-thread gradient buffers (extra values, then the four synapse arrays in S's panel layout,
// S the transposed (post, pre) block) and writes them into out: the extra values into out[0] (if any),
// the synapse arrays into the next four, (pre, post) as the parameters.
template <typename T>
void write_gradients(std::vector<std::vector<T>>& partial, int64_t extra, const Synapses<T>& S,
                     torch::Tensor* out) {
  std::vector<T>& total = partial[0];
  for (size_t t = 1; t < partial.size(); ++t) {
    for (size_t n = 0; n < total.size(); ++n) total[n] += partial[t][n];
  }
  if (extra > 0) std::copy(total.begin(), total.begin() + extra, (out++)->template data_ptr<T>());
  for (int64_t q = 0; q < 4; ++q) {
    from_panels(total.data() + extra + q * panel_size(S), S.rows, S.columns, true, out[q].template data_ptr<T>());
  }
}

// What every row of the backward pass reads and writes.
template <typename T>
struct Backward {
  Block B;
  int64_t steps, batch, N, unfolds;
  Synapses<T> S;  // the block in panels, (post, pre)
  const T *cm, *g_states, *states, *trace, *h, *keep;
  T *g_v0, *g_sn, *g_sc, *g_h;
};

// The backward pass of R batch rows b0 .. b0 + R - 1 through the whole sequence; parameter
// gradients accumulate into acc (cm: N; then sigma, mu, w, we in the panels' layout). Each unfold's
// output state is the next unfold's input (the step's state after the last), its denominator is traced.
template <typename T, int R>
void backward_rows(const Backward<T>& c, int64_t b0, Row<T>* rows, T* acc) {
  using V = Vectorized<T>;
  const int64_t N = c.N;
  T* G_cm = acc;
  for (int r = 0; r < R; ++r) std::fill(rows[r].g.begin(), rows[r].g.end(), T(0));
  for (int64_t t = c.steps - 1; t >= 0; --t) {
    for (int r = 0; r < R; ++r) {
      const int64_t tb = t * c.batch + b0 + r;
      Row<T>& row = rows[r];
      for_vectors<T>(N, [&](int64_t i, int64_t n) {
        store(load(row.g.data() + i, n) + load(c.g_states + tb * N + i, n), row.g.data() + i, n);
        store(load(c.cm + i, n) / V(c.h[tb]), row.cm_t.data() + i, n);
      });
      for (auto* zero : {&row.g_cm_t, &row.g_sn, &row.g_sc}) std::fill(zero->begin(), zero->end(), T(0));
    }
    for (int64_t u = c.unfolds - 1; u >= 0; --u) {
      const T* v[R];
      for (int r = 0; r < R; ++r) {
        const T* slot = c.trace + (((b0 + r) * c.steps + t) * c.unfolds + u) * 2 * N;
        const T *bottom = slot + N, *v_out = u + 1 < c.unfolds ? slot + 2 * N : c.states + (t * c.batch + b0 + r) * N;
        Row<T>& row = rows[r];
        v[r] = slot;
        for_vectors<T>(N, [&](int64_t i, int64_t n) {
          const V g_top = load(row.g.data() + i, n) / load(bottom + i, n);
          const V g_bottom = V(T(0)) - g_top * load(v_out + i, n);
          store(g_top, row.g_top.data() + i, n);
          store(g_bottom, row.g_bottom.data() + i, n);
          store(load(row.g_sn.data() + i, n) + g_top, row.g_sn.data() + i, n);
          store(load(row.g_sc.data() + i, n) + g_bottom, row.g_sc.data() + i, n);
          store(load(row.g_cm_t.data() + i, n) + at::vec::fmadd(g_top, load(slot + i, n), g_bottom),
                row.g_cm_t.data() + i, n);
        });
      }
      synapse_vjp<T, R>(c.B, v, rows, c.S, acc + N);
      for (int r = 0; r < R; ++r) {
        Row<T>& row = rows[r];
        for_vectors<T>(N, [&](int64_t i, int64_t n) {
          store(at::vec::fmadd(load(row.g_top.data() + i, n), load(row.cm_t.data() + i, n),
                               load(row.g_pre.data() + i, n)), row.g.data() + i, n);
        });
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
      std::copy(row.g_sn.begin(), row.g_sn.end(), c.g_sn + tb * N);
      std::copy(row.g_sc.begin(), row.g_sc.end(), c.g_sc + tb * N);
      if (c.keep && c.keep[tb] == T(0)) std::fill(row.g.begin(), row.g.end(), T(0));
    }
  }
  for (int r = 0; r < R; ++r) std::copy(rows[r].g.begin(), rows[r].g.end(), c.g_v0 + (b0 + r) * N);
}

// out: the gradients w.r.t. v0, sn, sc, h, gleak, vleak, cm, sigma, mu, w, we. Those of gleak and
// vleak follow from sn's and sc's (they enter the update as gleak vleak + sn and gleak + sc).
template <typename T>
void backward_impl(const torch::Tensor& g_states, const torch::Tensor& states, const torch::Tensor& trace,
                   const torch::Tensor& h, const torch::Tensor& keep, const Params& p, int64_t unfolds,
                   std::vector<torch::Tensor>& out) {
  const int64_t steps = states.size(0), batch = states.size(1), N = states.size(2);
  const Block B = block_of(p, N);
  const Panels<T> panels(p.sigma, p.mu, p.w, p.we, true);
  const Backward<T> c{B, steps, batch, N, unfolds, panels.view(), p.cm.data_ptr<T>(), g_states.data_ptr<T>(),
                      states.data_ptr<T>(), trace.data_ptr<T>(), h.data_ptr<T>(),
                      keep.defined() ? keep.data_ptr<T>() : nullptr, out[0].data_ptr<T>(), out[1].data_ptr<T>(),
                      out[2].data_ptr<T>(), out[3].data_ptr<T>()};
  // Per-thread parameter gradients, summed at the end.
  std::vector<std::vector<T>> partial(at::get_num_threads(), std::vector<T>(N + 4 * panel_size(c.S), T(0)));
  parallel_row_groups(
      batch, batch * B.pre * B.post < (1 << 16), [&] { return std::vector<Row<T>>(kRows, Row<T>(N, B.pre, N)); },
      [&](auto group, int64_t b0, std::vector<Row<T>>& rows) {
        backward_rows<T, decltype(group)::value>(c, b0, rows.data(), partial[at::get_thread_num()].data());
      });
  write_gradients(partial, N, c.S, out.data() + 6);
  const T *g_sn = c.g_sn, *g_sc = c.g_sc, *gleak = p.gleak.data_ptr<T>(), *vleak = p.vleak.data_ptr<T>();
  T *G_gleak = out[4].data_ptr<T>(), *G_vleak = out[5].data_ptr<T>();
  std::vector<T> sum_sn(N, T(0)), sum_sc(N, T(0));
  for (int64_t tb = 0; tb < steps * batch; ++tb) {
    for (int64_t i = 0; i < N; ++i) sum_sn[i] += g_sn[tb * N + i], sum_sc[i] += g_sc[tb * N + i];
  }
  for (int64_t i = 0; i < N; ++i) G_gleak[i] = vleak[i] * sum_sn[i] + sum_sc[i], G_vleak[i] = gleak[i] * sum_sn[i];
}

// Returns the gradients w.r.t. v0, sn, sc, h, gleak, vleak, cm, sigma, mu, w, we (the (pre, post) block),
// given the forward pass's states and trace.
std::vector<torch::Tensor> backward(torch::Tensor g_states, torch::Tensor states, torch::Tensor trace, torch::Tensor h,
                                    c10::optional<torch::Tensor> keep, torch::Tensor gleak, torch::Tensor vleak,
                                    torch::Tensor cm, torch::Tensor sigma, torch::Tensor mu, torch::Tensor w,
                                    torch::Tensor we, c10::optional<torch::Tensor> pre_index,
                                    c10::optional<torch::Tensor> post_index, int64_t unfolds) {
  Params p = contiguous_params(gleak, vleak, cm, sigma, mu, w, we, pre_index, post_index);
  g_states = g_states.contiguous(), states = states.contiguous(), trace = trace.contiguous(), h = h.contiguous();
  std::vector<torch::Tensor> out;  // contiguous, as the kernel writes them
  for (const auto& like : {g_states[0], g_states, g_states, h, p.gleak, p.vleak, p.cm, p.sigma, p.mu, p.w, p.we}) {
    out.push_back(torch::empty(like.sizes(), like.options()));
  }
  torch::Tensor keep_t = keep.has_value() ? keep->contiguous() : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(states.scalar_type(), "ltc_native_backward", [&] {
    backward_impl<scalar_t>(g_states, states, trace, h, keep_t, p, unfolds, out);
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
    const Block B = block_of(p, neurons);
    const Panels<T> panels(p.sigma, p.mu, p.w, p.we, false);
    const Synapses<T> S = panels.view();
    const T* xs = x.data_ptr<T>();
    T *num_p = num.data_ptr<T>(), *cond_p = cond.data_ptr<T>();
    auto make_scratch = [&] { return std::vector<SumsScratch<T>>(kRows, SumsScratch<T>(B)); };
    auto body = [&](auto group, int64_t r0, std::vector<SumsScratch<T>>& scratch) {
      constexpr int R = decltype(group)::value;
      const T* v[R];
      T *num_out[R], *cond_out[R];
      for (int r = 0; r < R; ++r) {
        v[r] = xs + (r0 + r) * inputs, num_out[r] = num_p + (r0 + r) * neurons;
        cond_out[r] = cond_p + (r0 + r) * neurons;
      }
      block_sums<T, R>(B, v, S, scratch.data(), num_out, cond_out);
    };
    parallel_row_groups(rows, rows < 64, make_scratch, body);
  });
  return {num, cond};
}

// Its backward: the gradients w.r.t. x and the (pre, post) block's sigma, mu, w, we.
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
    const Block B = block_of(p, neurons);
    const Panels<T> panels(p.sigma, p.mu, p.w, p.we, true);
    const Synapses<T> S = panels.view();
    const T *xs = x.data_ptr<T>(), *gn = g_num.data_ptr<T>(), *gc = g_cond.data_ptr<T>();
    T* g_x = out[0].data_ptr<T>();
    std::vector<std::vector<T>> partial(at::get_num_threads(), std::vector<T>(4 * panel_size(S), T(0)));
    auto make_scratch = [&] { return std::vector<Row<T>>(kRows, Row<T>(neurons, B.pre, inputs)); };
    auto body = [&](auto group, int64_t r0, std::vector<Row<T>>& row) {
      constexpr int R = decltype(group)::value;
      const T* v[R];
      for (int r = 0; r < R; ++r) {
        v[r] = xs + (r0 + r) * inputs;
        std::copy(gn + (r0 + r) * neurons, gn + (r0 + r + 1) * neurons, row[r].g_top.begin());
        std::copy(gc + (r0 + r) * neurons, gc + (r0 + r + 1) * neurons, row[r].g_bottom.begin());
      }
      synapse_vjp<T, R>(B, v, row.data(), S, partial[at::get_thread_num()].data());
      for (int r = 0; r < R; ++r) std::copy(row[r].g_pre.begin(), row[r].g_pre.end(), g_x + (r0 + r) * inputs);
    };
    parallel_row_groups(rows, rows < 64, make_scratch, body);
    write_gradients(partial, 0, S, out.data() + 1);
  });
  return out;
}

// Positive weights: the raw values through softplus (implicit constraints) or as they are, masked.
template <typename T>
void positive(const T* raw, const T* mask, int64_t n, bool implicit, T* out) {
  using V = Vectorized<T>;
  for_vectors<T>(n, [&](int64_t k, int64_t lanes) {
    const V x = load(raw + k, lanes), y = implicit ? softplus(x) : x;
    store(mask ? y * load(mask + k, lanes) : y, out + k, lanes);
  });
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

// The fields of ltc_fast.CellTensors, in their order (tests/test_native_ltc.py compares the two): inference
// receives the cell's tensors as one list and reads them by these positions. The last four are optional.
enum Field : int64_t {
  GLEAK, VLEAK, CM, SIGMA, MU, W, EREV, SENSORY_SIGMA, SENSORY_MU, SENSORY_W, SENSORY_EREV, SPARSITY_MASK,
  SENSORY_SPARSITY_MASK, INPUT_W, INPUT_B, OUTPUT_W, OUTPUT_B, FIELD_COUNT
};

template <typename T>
void inference_impl(const torch::Tensor& x, const torch::Tensor& v0, const torch::Tensor& dt,
                    const std::vector<torch::Tensor>& t, bool implicit, int64_t unfolds, double epsilon,
                    torch::Tensor& outputs, torch::Tensor& states) {
  const int64_t batch = x.size(0), I = x.size(1), N = v0.size(1), O = outputs.size(1);
  std::vector<T> gleak(N), cm(N), w, we, sw, swe;
  positive(t[GLEAK].data_ptr<T>(), static_cast<const T*>(nullptr), N, implicit, gleak.data());
  positive(t[CM].data_ptr<T>(), static_cast<const T*>(nullptr), N, implicit, cm.data());
  prepare_synapses<T>(t[W], t[EREV], t[SPARSITY_MASK], implicit, w, we);
  prepare_synapses<T>(t[SENSORY_W], t[SENSORY_EREV], t[SENSORY_SPARSITY_MASK], implicit, sw, swe);
  const T* vleak = t[VLEAK].data_ptr<T>();
  const std::vector<T> slope = slopes(t[SIGMA].data_ptr<T>(), N * N),
                       sensory_slope = slopes(t[SENSORY_SIGMA].data_ptr<T>(), I * N);
  const Synapses<T> recurrent{t[SIGMA].data_ptr<T>(), slope.data(), t[MU].data_ptr<T>(), w.data(), we.data(),
                              N, N, N, 1};
  const Synapses<T> sensory{t[SENSORY_SIGMA].data_ptr<T>(), sensory_slope.data(), t[SENSORY_MU].data_ptr<T>(),
                            sw.data(), swe.data(), I, N, N, 1};
  const T* in_w = t[INPUT_W].defined() ? t[INPUT_W].data_ptr<T>() : nullptr;
  const T* in_b = t[INPUT_B].defined() ? t[INPUT_B].data_ptr<T>() : nullptr;
  const T* out_w = t[OUTPUT_W].defined() ? t[OUTPUT_W].data_ptr<T>() : nullptr;
  const T* out_b = t[OUTPUT_B].defined() ? t[OUTPUT_B].data_ptr<T>() : nullptr;
  const T* dt_p = dt.defined() ? dt.data_ptr<T>() : nullptr;
  const T eps = static_cast<T>(epsilon);
  std::vector<T> inputs(I), sn(N), sc(N), num(N), cond(N), cm_t(N), top(N), bottom(N), v(N);
  for (int64_t b = 0; b < batch; ++b) {
    const T* xb = x.data_ptr<T>() + b * I;
    for (int64_t j = 0; j < I; ++j) inputs[j] = (in_w ? xb[j] * in_w[j] : xb[j]) + (in_b ? in_b[j] : T(0));
    const T* in[1] = {inputs.data()};
    T *sn_out[1] = {sn.data()}, *sc_out[1] = {sc.data()}, *num_out[1] = {num.data()}, *cond_out[1] = {cond.data()};
    synapse_sums<T, 1>(sensory, in, sn_out, sc_out);
    const T h = (dt_p ? dt_p[b] : T(1)) / static_cast<T>(unfolds);
    step_constants(N, cm.data(), gleak.data(), vleak, h, sn.data(), sc.data(), eps, cm_t.data(), top.data(),
                   bottom.data());
    std::copy(v0.data_ptr<T>() + b * N, v0.data_ptr<T>() + (b + 1) * N, v.begin());
    for (int64_t u = 0; u < unfolds; ++u) {
      const T* state[1] = {v.data()};
      synapse_sums<T, 1>(recurrent, state, num_out, cond_out);
      fused_update(N, cm_t.data(), top.data(), bottom.data(), num.data(), cond.data(), v.data(),
                   static_cast<T*>(nullptr));
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
  TORCH_CHECK(static_cast<int64_t>(tensors.size()) == FIELD_COUNT, "inference takes the ", FIELD_COUNT,
              " fields of CellTensors, got ", tensors.size());
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

// The softplus that inference applies to raw weights (implicit constraints), elementwise.
torch::Tensor softplus_of(torch::Tensor x) {
  x = x.contiguous();
  auto out = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ltc_native_softplus", [&] {
    positive(x.data_ptr<scalar_t>(), static_cast<const scalar_t*>(nullptr), x.numel(), true, out.data_ptr<scalar_t>());
  });
  return out;
}

// inference as a dispatcher operator, ltc_rl::inference: traced TorchScript records it (the Python binding is
// invisible to tracing), so an export can run this kernel (agents/export.py, kernel="native"). Tracing takes no
// lists of optional tensors, so absent fields come as empty tensors.
std::tuple<torch::Tensor, torch::Tensor> inference_op(const torch::Tensor& x, const torch::Tensor& v0,
                                                      const c10::optional<torch::Tensor>& dt,
                                                      const std::vector<torch::Tensor>& tensors, bool implicit,
                                                      int64_t unfolds, double epsilon, int64_t output_size) {
  std::vector<c10::optional<torch::Tensor>> fields;
  for (const auto& tensor : tensors) {
    fields.push_back(tensor.numel() ? c10::optional<torch::Tensor>(tensor) : c10::nullopt);
  }
  auto out = inference(x, v0, dt, std::move(fields), implicit, unfolds, epsilon, output_size);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY(ltc_rl, m) {
  m.def("inference(Tensor x, Tensor state, Tensor? dt, Tensor[] tensors, bool implicit, int unfolds, "
        "float epsilon, int output_size) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(ltc_rl, CPU, m) { m.impl("inference", &inference_op); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("vector_width", [] { return static_cast<int64_t>(Vectorized<float>::size()); },
        "float32 lanes of the vector instructions the kernel was built for");
  m.def("forward", &forward, "Fused-solver LTC sequence forward (states, optional trace)");
  m.def("softplus", &softplus_of, "The softplus inference applies to raw weights (elementwise)");
  m.def("inference", &inference, "A whole batch-1 cell step from the raw parameters (no autograd)");
  m.def("sensory_forward", &sensory_forward, "Sensory synapse sums of many rows (all time steps)");
  m.def("sensory_backward", &sensory_backward, "Backward of sensory_forward (recomputing the activations)");
  m.def("backward", &backward, "Fused-solver LTC sequence backward (recomputing synapse activations)");
}
