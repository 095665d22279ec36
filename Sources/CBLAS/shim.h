// OpenBLAS's CBLAS interface plus its thread-count controls. Imported only by DTKernels/BLAS.swift.
#include <cblas.h>
