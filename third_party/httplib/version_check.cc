// Fails the build when the httplib.h on the include path is not the one
// scripts/fetch-httplib.sh prepared: cpp-httplib 0.18.7 with egress.patch.
// Debian 12's /usr/include/httplib.h (0.11.4) must never be picked up instead.
#include <httplib.h>

#include <string_view>

#if !defined(EGRESS_HTTPLIB_PATCH) || EGRESS_HTTPLIB_PATCH < 3
#error \
    "httplib.h lacks egress.patch 3: run scripts/fetch-httplib.sh (scripts/setup.sh does)"
#endif

static_assert(std::string_view(CPPHTTPLIB_VERSION) == "0.18.7",
              "cpp-httplib must be 0.18.7: run scripts/fetch-httplib.sh");
