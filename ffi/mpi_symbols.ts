/**
 * The table of the MPI functions we call, as the MPICH ABI spells them (libmpi.so.12: MPICH, Intel MPI,
 * MVAPICH, Cray MPICH). Handles are C `int`s there (MPI_Comm, MPI_Datatype, MPI_Op, MPI_Errhandler), so they
 * cross as "i32"; their values are in ffi/mpi.ts. Nothing else lives here.
 */
export const mpiSymbols = {
  // int MPI_Initialized(int *flag)
  MPI_Initialized: { parameters: ["buffer"], result: "i32" },
  // int MPI_Init_thread(int *argc, char ***argv, int required, int *provided)
  MPI_Init_thread: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
  // int MPI_Finalize(void)
  MPI_Finalize: { parameters: [], result: "i32" },
  // int MPI_Abort(MPI_Comm comm, int errorcode)
  MPI_Abort: { parameters: ["i32", "i32"], result: "i32" },
  // int MPI_Comm_rank(MPI_Comm comm, int *rank)
  MPI_Comm_rank: { parameters: ["i32", "buffer"], result: "i32" },
  // int MPI_Comm_size(MPI_Comm comm, int *size)
  MPI_Comm_size: { parameters: ["i32", "buffer"], result: "i32" },
  // int MPI_Comm_set_errhandler(MPI_Comm comm, MPI_Errhandler errhandler)
  MPI_Comm_set_errhandler: { parameters: ["i32", "i32"], result: "i32" },
  // int MPI_Error_string(int errorcode, char *string, int *resultlen)
  MPI_Error_string: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int MPI_Get_library_version(char *version, int *resultlen)
  MPI_Get_library_version: { parameters: ["buffer", "buffer"], result: "i32" },
  // int MPI_Barrier(MPI_Comm comm)
  MPI_Barrier: { parameters: ["i32"], result: "i32" },
  // int MPI_Bcast(void *buffer, int count, MPI_Datatype datatype, int root, MPI_Comm comm)
  MPI_Bcast: { parameters: ["buffer", "i32", "i32", "i32", "i32"], result: "i32" },
  // int MPI_Allgather(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf, int recvcount,
  //   MPI_Datatype recvtype, MPI_Comm comm)
  MPI_Allgather: { parameters: ["buffer", "i32", "i32", "buffer", "i32", "i32", "i32"], result: "i32" },
  // int MPI_Alltoall(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf, int recvcount,
  //   MPI_Datatype recvtype, MPI_Comm comm)
  MPI_Alltoall: { parameters: ["buffer", "i32", "i32", "buffer", "i32", "i32", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;
