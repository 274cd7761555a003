#pragma once
// Shared between the C++ CPU build (g++) and the CUDA build (nvcc): per-element math is written
// once, marked RPN2K_HD, and compiled for both host and device.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define RPN2K_HD __host__ __device__
#else
#define RPN2K_HD
#endif
#define RPN2K_INLINE RPN2K_HD inline
