"""cc_grpc_library: C++ protobuf and gRPC code from the system protoc.

Bazel 4.2.3's native cc_proto_library needs @com_google_protobuf, which cannot be
downloaded here; this macro runs Debian's protoc and grpc_cpp_plugin in a genrule
and wraps the generated files in a cc_library.
"""

def cc_grpc_library(name, src, grpc = True, deps = [], imports = [], **kwargs):
    """Generates <src>.pb.{h,cc} (and .grpc.pb.{h,cc} when grpc) into a cc_library.

    Args:
      name: the cc_library's name.
      src: one .proto file in this package. Imports resolve from the workspace
        root and /usr/include (well-known types).
      grpc: whether to generate the service stubs too.
      deps: cc_grpc_library targets of imported protos.
      imports: the imported .proto files of other packages (exported there).
      **kwargs: passed to the cc_library (visibility, ...).
    """
    base = src[:-len(".proto")]
    pkg = native.package_name()
    outs = [base + ".pb.h", base + ".pb.cc"]
    if grpc:
        outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    grpc_flags = ""
    if grpc:
        grpc_flags = "--grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin "
    native.genrule(
        name = name + "_gen",
        srcs = [src] + imports,
        outs = outs,
        cmd = ("/usr/bin/protoc -I. -I/usr/include --cpp_out=$(GENDIR) " + grpc_flags +
               pkg + "/" + src),
        message = "protoc " + pkg + "/" + src,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["@system//:grpc" if grpc else "@system//:protobuf"],
        **kwargs
    )
