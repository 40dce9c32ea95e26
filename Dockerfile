# egressd container image: built with the same setup script and Bazel command
# that CI runs (scripts/setup.sh, bazel build -c opt), run as non-root from a
# slim Debian 12 image with only the runtime libraries.
#   docker build -t egress:0.1.0 .
# The config listens on 0.0.0.0, so egressd starts only with caller
# authentication (or --allow_unauthenticated), as the Kubernetes manifests do:
#   docker run -p 50051:50051 -v "$PWD/tokens.txt:/etc/egress-tokens/tokens.txt:ro" \
#     egress:0.1.0 --config=/etc/egress/egressd.textproto \
#     --auth_tokens_file=/etc/egress-tokens/tokens.txt
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends sudo \
 && scripts/setup.sh \
 && bazel build -c opt //service:egressd //client:egressctl \
 && install -D -m 0755 bazel-bin/service/egressd /out/egressd \
 && install -D -m 0755 bazel-bin/client/egressctl /out/egressctl \
 && bazel shutdown

FROM debian:12-slim
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates \
      libgrpc++1.51 libprotobuf32 libprometheus-cpp-core1.0 \
      libabsl20220623 libssl3 libtcmalloc-minimal4 libhiredis0.14 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/egressd /out/egressctl /usr/local/bin/
COPY k8s/base/config/egressd.textproto /etc/egress/egressd.textproto
USER 65532:65532
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/egressd"]
CMD ["--config=/etc/egress/egressd.textproto"]
