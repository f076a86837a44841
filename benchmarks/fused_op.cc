// A measurement, not part of penet_tf (benchmarks/fused_op.py builds and loads it).
//
// The attention's passes between its two products -- 3 x 3 box average of the Gram
// product's skewed view, key factor, softmax, rescale to the image's keys times the row
// factor, 1e-8 floor, 2 x 2 box average of the attention's skewed view -- as one CPU
// kernel: it reads the Gram buffer once and writes the transfer's operand once, where
// seven builtin ops read and write the (h w)^2 scores 13 times. The box
// sums are separable (rows of horizontal sums kept in ring buffers), each thread takes
// a range of rows and recomputes the few rows its neighbour's range needs.
//
// It computes what penet_tf.layers.attention_transfer's _chunk_weights and
// _one_chunk_weights compute (to float32 rounding) and returns the transfer operand and
// the attention's first column (all the callers read of the attention). It would not
// load in TF Serving, TFLite, TF.js or ONNX, which is why the library does not use it.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/blocking_counter.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace {

using ::tensorflow::int64;

REGISTER_OP("PenetFusedWeights")
    .Input("gram: float")         // [M, n]: the Gram product (one zero query row more)
    .Input("grid_factor: float")  // [n]: softmax scale * usable / key norm (0 off-image)
    .Input("inside: float")       // [n]: 1 for the image's keys
    .Input("row_factor: float")   // [A]: 1 for the image's queries, 0 for junk rows
    .Attr("width: int")           // the skewed views' grid width
    .Attr("box3_rows: int")       // the 3 x 3 view: [box3_rows, width, n + 1]
    .Attr("box2_rows: int")       // the 2 x 2 view: [box2_rows, width, n + 1]
    .Attr("out_rows: int")        // rows of the transfer operand returned
    .Output("first_column: float")  // [A]: the attention's column 0
    .Output("boxed: float")         // [out_rows, n]: the transfer operand
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      int out_rows;
      TF_RETURN_IF_ERROR(c->GetAttr("out_rows", &out_rows));
      c->set_output(0, c->Vector(c->Dim(c->input(3), 0)));
      c->set_output(1, c->Matrix(out_rows, c->Dim(c->input(0), 1)));
      return ::tensorflow::OkStatus();
    });

// Rows of n floats; row j lives in slot j % size.
class Ring {
 public:
  Ring(int64 size, int64 n) : data_(size * n), size_(size), n_(n) {}
  float* row(int64 j) { return data_.data() + (j % size_) * n_; }
  const float* at(int64 flat, int64* contiguous) {
    *contiguous = n_ - flat % n_;
    return row(flat / n_) + flat % n_;
  }

 private:
  std::vector<float> data_;
  int64 size_, n_;
};

// A plain buffer read like a Ring.
struct Flat {
  const float* data;
  const float* at(int64 flat, int64* contiguous) {
    *contiguous = INT64_MAX;
    return data + flat;
  }
};

// dst[0, len) = (or +=) source flats [start, start + len).
template <typename Source>
void take(float* dst, Source& source, int64 start, int64 len, bool add) {
  while (len > 0) {
    int64 contiguous;
    const float* src = source.at(start, &contiguous);
    const int64 count = std::min(len, contiguous);
    if (add) {
      for (int64 k = 0; k < count; ++k) dst[k] += src[k];
    } else {
      std::copy(src, src + count, dst);
    }
    dst += count;
    start += count;
    len -= count;
  }
}

struct View {  // a skewed [rows, width, channels = n + 1] view of a flat buffer
  int64 rows, width, channels;
};

// Row j (flats [j n, (j + 1) n)) of a box sum along one axis of `view`: the sum of
// source[f + d * step] over the offsets d in [lo, hi] that stay inside the view, where
// step is one position along x (channels) or y (width * channels). With `divide`, the
// result is divided by the window's count of positions inside the view on both axes
// (avg_pool2d's SAME padding); `x_lo`, `x_hi` give the window along x.
template <typename Source>
void box_row(float* out, Source& source, int64 j, int64 n, const View& view, bool along_x,
             int lo, int hi, bool divide, int x_lo, int x_hi) {
  const int64 end = (j + 1) * n;
  for (int64 f = j * n; f < end;) {
    const int64 position = f / view.channels;
    const int64 segment = std::min(end, (position + 1) * view.channels) - f;
    const int64 y = position / view.width, x = position % view.width;
    if (y >= view.rows) {  // past the view: never read
      std::fill(out, out + (end - f), 0.f);
      return;
    }
    const int64 at = along_x ? x : y, extent = along_x ? view.width : view.rows;
    const int64 step = along_x ? view.channels : view.width * view.channels;
    bool first = true;
    for (int d = lo; d <= hi; ++d) {
      if (at + d < 0 || at + d >= extent) continue;
      take(out, source, f + d * step, segment, !first);
      first = false;
    }
    if (divide) {
      int xs = 0, ys = 0;
      for (int d = x_lo; d <= x_hi; ++d) xs += (x + d >= 0 && x + d < view.width);
      for (int d = lo; d <= hi; ++d) ys += (y + d >= 0 && y + d < view.rows);
      const float inverse = 1.f / (xs * ys);
      for (int64 k = 0; k < segment; ++k) out[k] *= inverse;
    }
    out += segment;
    f += segment;
  }
}

class PenetFusedWeightsOp : public ::tensorflow::OpKernel {
 public:
  explicit PenetFusedWeightsOp(::tensorflow::OpKernelConstruction* context)
      : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("width", &width_));
    OP_REQUIRES_OK(context, context->GetAttr("box3_rows", &box3_rows_));
    OP_REQUIRES_OK(context, context->GetAttr("box2_rows", &box2_rows_));
    OP_REQUIRES_OK(context, context->GetAttr("out_rows", &out_rows_));
  }

  void Compute(::tensorflow::OpKernelContext* context) override {
    const ::tensorflow::Tensor& gram = context->input(0);
    OP_REQUIRES(context, gram.dims() == 2,
                ::tensorflow::errors::InvalidArgument("gram must be [M, n]"));
    const int64 n = gram.dim_size(1);
    const int64 attention_rows = context->input(3).NumElements();
    const View box3{box3_rows_, width_, n + 1}, box2{box2_rows_, width_, n + 1};
    const int64 box3_size = box3.rows * box3.width * box3.channels;
    const int64 box2_size = box2.rows * box2.width * box2.channels;
    OP_REQUIRES(context,
                context->input(1).NumElements() == n && context->input(2).NumElements() == n &&
                    box3_size <= gram.NumElements() && attention_rows * n <= box3_size &&
                    box2_size <= attention_rows * n && out_rows_ * n <= box2_size,
                ::tensorflow::errors::InvalidArgument("inconsistent views"));
    Flat scores{gram.flat<float>().data()};
    const float* grid_factor = context->input(1).flat<float>().data();
    const float* inside = context->input(2).flat<float>().data();
    const float* row_factor = context->input(3).flat<float>().data();
    ::tensorflow::Tensor* first_column = nullptr;
    ::tensorflow::Tensor* boxed = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, ::tensorflow::TensorShape({attention_rows}), &first_column));
    OP_REQUIRES_OK(context, context->allocate_output(
                                1, ::tensorflow::TensorShape({out_rows_, n}), &boxed));
    float* column = first_column->flat<float>().data();
    float* operand = boxed->flat<float>().data();
    const int64 gram_rows = (box3_size + n - 1) / n;
    const int64 width = width_;

    // Attention rows [first, last) and transfer-operand rows [first, min(last, out_rows)).
    auto rows = [&](int64 first, int64 last) {
      // Row i of the 3 x 3 box reads horizontal sums within width + 1 rows of it; row p
      // of the 2 x 2 box reads attention rows up to p + width + 2.
      Ring sums3(2 * width + 8, n), attention(8, n), sums2(width + 8, n);
      std::vector<float> dots(n);
      Eigen::Map<const Eigen::ArrayXf> factor(grid_factor, n), image(inside, n);
      const int64 attention_end = std::min(attention_rows, last + width + 3);
      const int64 out_end = std::min<int64>(last, out_rows_);
      int64 next3 = std::max<int64>(0, first - width - 2), next2 = first, next_out = first;
      for (int64 i = first; i < attention_end; ++i) {
        for (; next3 < std::min(gram_rows, i + width + 3); ++next3)
          box_row(sums3.row(next3), scores, next3, n, box3, true, -1, 1, false, 0, 0);
        box_row(dots.data(), sums3, i, n, box3, false, -1, 1, true, -1, 1);
        Eigen::Map<Eigen::ArrayXf> row(dots.data(), n);
        row *= factor;
        row = (row - row.maxCoeff()).exp();
        const float total = row.sum();
        const float in_image = (row * image).sum() / total;
        const float scale = row_factor[i] / (total * std::max(in_image, 1e-30f));
        Eigen::Map<Eigen::ArrayXf>(attention.row(i), n) = (row * scale).max(1e-8f);
        if (i < last) column[i] = attention.row(i)[0];
        const bool done = i == attention_end - 1;
        for (; next2 + 2 <= i || (done && next2 < attention_end); ++next2)
          box_row(sums2.row(next2), attention, next2, n, box2, true, 0, 1, false, 0, 0);
        for (; next_out < out_end && (next_out + width + 1 < next2 || done); ++next_out)
          box_row(operand + next_out * n, sums2, next_out, n, box2, false, 0, 1, true, 0, 1);
      }
    };

    auto* workers = context->device()->tensorflow_cpu_worker_threads();
    const int threads = std::max(1, workers->num_threads);
    ::tensorflow::BlockingCounter pending(threads - 1);
    for (int t = 1; t < threads; ++t) {
      workers->workers->Schedule([&, t]() {
        rows(attention_rows * t / threads, attention_rows * (t + 1) / threads);
        pending.DecrementCount();
      });
    }
    rows(0, attention_rows / threads);
    pending.Wait();
  }

 private:
  int width_, box3_rows_, box2_rows_, out_rows_;
};

REGISTER_KERNEL_BUILDER(Name("PenetFusedWeights").Device(::tensorflow::DEVICE_CPU),
                        PenetFusedWeightsOp);

}  // namespace
