// Entry point of the dtrain binary.
import DTCommands
import DTKernels

BLASCore.reexecWithBetterCoreIfNeeded()
DTrain.main()
