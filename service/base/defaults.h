// Defaults: every embedded default of egressd, written once.
//
// Config (config.h) starts from these values, the flags' defaults are read
// from Config, and the option structs of the units (SessionOptions,
// DnsCacheOptions, ...) start from them too, so a unit built by a test
// behaves as the service does unless the test says otherwise. Each setting's
// meaning is in docs/configuration.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace egress {
namespace defaults {

using std::chrono::minutes;
using std::chrono::seconds;

// Callers and workers.
// Loopback: beyond it, egressd refuses to start without caller
// authentication unless --allow_unauthenticated says so (an open relay).
inline constexpr char kListen[] = "127.0.0.1:50051";
inline constexpr char kMetricsListen[] = "0.0.0.0:9464";
// Workers: a warm minimum, more on demand (a stream holds one for its whole
// life, and LLM event streams last minutes), the extra ones retiring when
// idle this long.
inline constexpr size_t kMinWorkers = 16;
inline constexpr size_t kMaxWorkers = 4096;
inline constexpr minutes kWorkerIdleRetire{5};
// The pool's upkeep (retiring idle workers, parking idle workers' sessions)
// runs every --keepalive_timeout / 4 within these bounds: soon enough that
// other workers and the janitor see a parked session, rarely enough that a
// caller's next call usually comes first.
inline constexpr std::chrono::milliseconds kMaintenanceIntervalMin{50};
inline constexpr std::chrono::milliseconds kMaintenanceIntervalMax{500};
// How often the pool's janitor closes idle sessions past --keepalive_timeout:
// a quarter of it, within these bounds.
inline constexpr std::chrono::milliseconds kJanitorIntervalMin{50};
inline constexpr std::chrono::milliseconds kJanitorIntervalMax{250};
// The shared pool's shards (each with its own mutex), by a hash of the origin.
inline constexpr size_t kPoolShards = 16;
// The top this many idle workers keep their sessions (a hot origin's next
// calls find them with no lock); a worker going on the idle stack demotes the
// one this deep below it, which parks its session for everyone.
inline constexpr size_t kWorkerDemoteDepth = 4;
// How long egressd's log lines may wait to be written in a batch (log.h).
inline constexpr std::chrono::milliseconds kLogFlushInterval{50};
inline constexpr size_t kMaxQueue = 1024;
// Calls in flight to one origin (the seed's connector allowed 100 per host)
// and from one caller identity (0: no limit); more wait in that origin's or
// caller's own queue.
inline constexpr size_t kMaxInflightPerOrigin = 100;
inline constexpr size_t kMaxInflightPerCaller = 0;
// How long a call over a rate limit may wait for its turn (0: it is refused
// at once, with the time its turn would come).
inline constexpr std::chrono::nanoseconds kRateLimitMaxWait{0};
// Rate limits shared through Redis (--redis): the longest a call waits on it
// before this replica holds the limit by its own share, and the keys' prefix.
inline constexpr std::chrono::milliseconds kRedisTimeout{50};
inline constexpr char kRedisKeyPrefix[] = "egress";

// Sessions.
inline constexpr int kMaxSessionErrors = 3;
inline constexpr seconds kKeepaliveTimeout{30};
// Idle keep-alive sessions kept for one origin and in all (docs/limits.md).
inline constexpr size_t kMaxIdlePerOrigin = 100;
inline constexpr size_t kMaxIdleConnections = 4096;
inline constexpr int64_t kMaxRequestsPerSession = 0;  // unlimited

// Time.
inline constexpr seconds kDefaultTimeout{30};
inline constexpr seconds kMaxTimeout{300};
inline constexpr seconds kConnectTimeout{5};
inline constexpr minutes kStreamIdleTimeout{5};
inline constexpr seconds kDrainTimeout{20};
inline constexpr minutes kMaxConnectionAge{5};
inline constexpr minutes kMaxConnectionAgeGrace{5};

// The gRPC port: callers' connections (GrpcFront; docs/limits.md argues each).
inline constexpr size_t kMaxConnections = 2048;
inline constexpr size_t kMaxConnectionsPerPeer = 256;
inline constexpr seconds kHandshakeTimeout{10};
inline constexpr minutes kMaxConnectionIdle{5};
inline constexpr uint32_t kMaxConcurrentStreams = 1024;
inline constexpr size_t kMaxHeaderListBytes = 16 << 10;
inline constexpr uint32_t kMaxResetsPerSecond = 100;
inline constexpr uint32_t kMaxControlFramesPerSecond = 1000;
// DNS lookups running at once; more are refused rather than starting ever more
// threads for a flood of distinct names.
inline constexpr size_t kDnsMaxInflight = 256;
// HTTP/2's SETTINGS_HEADER_TABLE_SIZE default (RFC 9113 6.5.2), which gRPC's
// decoder keeps.
inline constexpr uint32_t kHttp2HeaderTableSize = 4096;

// Sizes.
// Request and response bytes held across all calls; the shipped Deployment's
// 512 MiB limit holds it with room for threads, sessions and the rest.
inline constexpr size_t kMaxBufferedBytes = size_t{256} << 20;
inline constexpr size_t kMaxRequestBytes = 16 << 20;
// A request's URL, header count and header bytes (names and values together).
inline constexpr size_t kMaxUrlBytes = 8192;
inline constexpr size_t kMaxRequestHeaders = 100;
inline constexpr size_t kMaxRequestHeaderBytes = 64 << 10;
inline constexpr size_t kMaxResponseBytes = 64 << 20;
inline constexpr size_t kMaxStreamBytes = 0;  // unlimited
// The most bytes one DoStream message carries; a stream's pump holds at most
// one such chunk pending and one being written.
inline constexpr size_t kStreamChunkBytes = 64 << 10;
inline constexpr size_t kMaxResponseLineBytes = 16 << 10;
inline constexpr size_t kMaxResponseHeaders = 200;
inline constexpr size_t kMaxResponseHeadBytes = 64 << 10;

// Destinations.
inline constexpr char kAllowPorts[] = "80,443";

// Upstream TLS.
inline constexpr char kUpstreamTlsMinVersion[] = "1.2";
// kUpstreamTlsMinVersion as OpenSSL numbers it (TLS1_2_VERSION).
inline constexpr int kUpstreamTlsMinProtocol = 0x0303;

// DNS.
inline constexpr seconds kDnsTtl{600};
inline constexpr seconds kDnsNegativeTtl{5};
inline constexpr size_t kDnsCacheSize = 10000;

// Logs.
inline constexpr bool kAccessLog = true;
inline constexpr char kLogFormat[] = "text";

// Retry-After retries (opt-in per call) are at most this share of calls, with
// this many in reserve.
inline constexpr double kRetryBudgetRatio = 0.1;
inline constexpr uint32_t kRetryBudgetBurst = 10;

// Trace context (x-request-id, traceparent, tracestate) goes upstream.
inline constexpr bool kForwardTraceContext = true;

// Errors: the RetryInfo delay of a refusal that waiting may cure (a full
// queue, a limit, the memory budget).
inline constexpr std::chrono::milliseconds kBusyRetryDelay{250};

// Happy Eyeballs (--connect_head_start): how long a connect to one of several
// addresses may take before the next address is tried (sequential; RFC 8305
// races at 250 ms).
inline constexpr std::chrono::milliseconds kConnectHeadStart{300};

// Fixed bounds: not settings, but written here once, each with why.
// TLS sessions saved for resumption: origins kept, and sessions per origin
// (one per connection that may open at once, a few).
inline constexpr size_t kTlsSessionOrigins = 4096;
inline constexpr size_t kTlsSessionsPerOrigin = 4;
// Out of descriptors even for the spare one, the gRPC front stops watching
// its listeners this long rather than spin on one that stays readable.
inline constexpr std::chrono::milliseconds kAcceptPause{100};
// Bytes waiting in one direction of one caller's connection at the gRPC
// front, at most (plus one read): a caller that does not read is not read.
inline constexpr size_t kFrontHighWater = 256 << 10;
// PINGs and SETTINGS a caller may leave unanswered (its reads stopped) before
// its connection is closed.
inline constexpr int kMaxUnansweredControlFrames = 100;
// The longest caller-given request id kept; a longer one is replaced.
inline constexpr size_t kMaxRequestIdBytes = 128;
// The longest tracestate kept (W3C: 32 members of at most 256 bytes; 512 is
// what the W3C asks a vendor to propagate at least).
inline constexpr size_t kMaxTraceStateBytes = 512;
// A session idle at least this long has its socket checked before it is lent.
inline constexpr std::chrono::milliseconds kCheckIdleAfter{1000};
// The most attempts a call may ask for (DoRequest.retry), the first included.
inline constexpr int kMaxRetryAttempts = 10;
// The most body bytes of an answer dropped for a Retry-After retry that are
// read to keep its connection; past them, the exchange is abandoned (and the
// connection closed).
inline constexpr size_t kMaxDroppedBodyBytes = 64 << 10;
// Outlier ejection, for origins whose entry does not say otherwise: the
// consecutive connection failures (refused, timed out, reset before any
// answer) that eject an origin (a few: one lost SYN is no outage), and the
// 5xx answers (0: 5xx never ejects, since an API's 5xx is often the caller's
// problem); the first ejection's length, doubled for each one in a row up to
// the cap (Envoy's base is 30 s; 10 s lets a restarted upstream back sooner).
inline constexpr int kEjectAfterFailures = 5;
inline constexpr int kEjectAfter5xx = 0;
inline constexpr std::chrono::seconds kEjectionBaseTime{10};
inline constexpr std::chrono::seconds kEjectionMaxTime{300};
// A probe call let through to an ejected origin that has not ended after
// this long no longer holds back the next probe.
inline constexpr std::chrono::seconds kEjectionProbeTimeout{30};
// Origins with failures on record, at most (each a few dozen bytes).
inline constexpr size_t kMaxEjectionOrigins = 10000;
// How often the config file is looked at for a change (hot reload); SIGHUP
// reloads at once.
inline constexpr std::chrono::seconds kConfigPollInterval{2};

}  // namespace defaults
}  // namespace egress
