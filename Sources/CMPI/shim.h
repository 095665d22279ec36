// OpenMPI's C API. OpenMPI defines its handles (communicators, datatypes, ops) as macros that take the
// address of global structs, which Swift cannot import; these static inline accessors expose them.
// Imported only by DTParallel/MPICommunicator.swift.
#include <mpi.h>

static inline MPI_Comm dt_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype dt_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype dt_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype dt_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype dt_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Op dt_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op dt_mpi_max(void) { return MPI_MAX; }
static inline MPI_Errhandler dt_mpi_errors_are_fatal(void) { return MPI_ERRORS_ARE_FATAL; }
static inline int dt_mpi_success(void) { return MPI_SUCCESS; }
static inline void *dt_mpi_in_place(void) { return MPI_IN_PLACE; }
