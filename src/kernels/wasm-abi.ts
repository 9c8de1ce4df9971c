// The WebAssembly kernels' ABI: the numbers that asm/kernels.ts (compiled by AssemblyScript) and the
// TypeScript side (wasm-kernels.ts) must agree on. Both import this file, so it holds only integer
// constants that mean the same in either language.

// Weight encodings (`dtype` arguments).
export const DTYPE_F32 = 0;
export const DTYPE_F16 = 1;
export const DTYPE_BF16 = 2;
export const DTYPE_Q4_0 = 3;
export const DTYPE_Q4_1 = 4;
export const DTYPE_Q5_0 = 5;
export const DTYPE_Q5_1 = 6;
export const DTYPE_Q8_0 = 7;
/** The opt-in int8 rows: an f32 scale padded to 16 bytes, then the i8 values padded to a multiple of 16. */
export const DTYPE_INT8 = 8;
/**
 * f16 rows of a matrix that holds inf or NaN somewhere (wasm-kernels.ts scans each f16 matrix once): the
 * matrix-vector product widens them exactly, the fast f16 loop leaves exponent 31 finite.
 */
export const DTYPE_F16_SPECIAL = 9;
/**
 * The legacy quantized types against activations quantized as ggml does (wasm-abi order Q4_0 … Q8_0 plus
 * this offset): each block of 32 activations becomes 32 i8 with an f16-rounded scale (Q8_0; Q8_1 adds
 * the f16-rounded d·Σq), and each block product is one integer dot product. `DTYPE_Q4_0 + Q8_ACTIVATIONS`
 * is Q4_0 against Q8_0 activations, and so on.
 */
export const Q8_ACTIVATIONS = 8;
export const DTYPE_Q4_0_Q8 = 11;
export const DTYPE_Q4_1_Q8 = 12;
export const DTYPE_Q5_0_Q8 = 13;
export const DTYPE_Q5_1_Q8 = 14;
export const DTYPE_Q8_0_Q8 = 15;

// Grids of `roundActivations` (activations replaced by their ggml-quantized values, for the products
// that decode weights to f32): 32-value blocks with an f16 scale (Q8_0 / Q8_1), or 256-value blocks with
// an f32 scale (Q8_K, the K-quants').
export const GRID_Q8_0 = 0;
export const GRID_Q8_K = 1;

// Functions a batched product applies to its results (0: none).
export const FN_NONE = 0;
export const FN_RELU2 = 1;
export const FN_SIGMOID = 2;
export const FN_TANH = 3;

// One product of a matvecBatch job: an entry of JOB_BYTES bytes per product, fields at these byte offsets.
export const JOB_BYTES = 48;
export const JOB_DTYPE = 0; // i32
export const JOB_WEIGHTS = 4; // u32 address of the weights
export const JOB_X = 8; // u32 address of the (prepared) activations
export const JOB_Y = 12; // u32 address of the results
export const JOB_COLS = 16; // i32
export const JOB_ROWS = 20; // i32
export const JOB_START = 24; // i32: the product's first row in the job's row numbering
export const JOB_X_SCALE = 28; // f32: int8 activations' scale
export const JOB_FN = 32; // i32: FN_*

// Elementwise operations over rows (`elementwise` kernel).
export const EW_LERP = 0; // a + (b − a)·mu
export const EW_ADD = 1;
export const EW_MUL = 2;
