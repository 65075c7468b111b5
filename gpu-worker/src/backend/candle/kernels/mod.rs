//! CPU kernels for quantized matrix products, and the matrices that hold weights for them.
//!
//! # Layout
//!
//! - [`qmatrix`]: [`QMatrix`](qmatrix::QMatrix), a quantized weight held once, in its GGUF
//!   blocks, multiplied by this folder's kernels where they apply and by candle's elsewhere.
//! - [`x8`]: the layer every kernel shares: 8-bit input quantization, the row-parallel driver
//!   and the [`Kernel`](x8::Kernel) trait each quantization implements.
//! - [`q4k_x8`]: Q4_K, repacked eight rows at a time; [`q6k`]: Q6_K;
//!   [`block32`]: the 32-weight-block formats Q5_0 and Q8_0.
//! - [`plain_data`]: ggml blocks seen through mirror structs and as bytes, the one place
//!   memory is reinterpreted.
//! - [`huge_pages`]: transparent huge pages for the weight buffers.

pub mod block32;
pub mod cpu_kernels;
pub mod huge_pages;
pub mod plain_data;
pub mod q4k_x8;
pub mod q6k;
pub mod qmatrix;
pub mod x8;
