// What a user of the rings needs in scope with `import FabricQueue` alone:
// the swift-system types that appear in this module's API. (The system
// layer's public error type is the `SystemCallError` alias.)
@_exported import struct SystemPackage.Errno
@_exported import struct SystemPackage.FileDescriptor
@_exported import struct SystemPackage.FilePath
@_exported import struct SystemPackage.FilePermissions
