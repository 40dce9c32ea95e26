// BlackHole: a listener on a loopback address whose backlog is full and which
// never accepts: the kernel drops further SYNs, so a connect to it hangs like
// one to a black-holed route or a dead host.
//
// Usage:
//   BlackHole hole;                       // 127.0.0.1, an ephemeral port
//   ... connect to 127.0.0.1:hole.port() hangs until its timeout
//
// Thread safety: not thread-safe; port() and Connecting() may be called from
// any thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace egress {

class BlackHole {
 public:
  explicit BlackHole(const char* address = "127.0.0.1", int port = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    inet_pton(AF_INET, address, &addr.sin_addr);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    // Fill the backlog with connections nobody accepts.
    for (int i = 0; i < 4; ++i) {
      int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
      fillers_.push_back(c);
      sockaddr_in local{};
      socklen_t local_len = sizeof(local);
      getsockname(c, reinterpret_cast<sockaddr*>(&local), &local_len);
      filler_ports_.push_back(ntohs(local.sin_port));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ~BlackHole() {
    for (int c : fillers_) close(c);
    close(fd_);
  }
  BlackHole(const BlackHole&) = delete;
  BlackHole& operator=(const BlackHole&) = delete;

  int port() const { return port_; }

  // Sockets of this machine in SYN_SENT towards port() (/proc/net/tcp), its
  // own backlog fillers left out: a test waits for one to know that a
  // connect is under way.
  int Connecting() const {
    // "0100007F:9C40" -> 0x9C40
    auto port_of = [](const std::string& address) {
      return std::stoi(address.substr(address.rfind(':') + 1), nullptr, 16);
    };
    std::ifstream tcp("/proc/net/tcp");
    std::string line;
    std::getline(tcp, line);  // the column names
    int n = 0;
    while (std::getline(tcp, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      if (state == "02" && port_of(remote) == port_ &&
          std::find(filler_ports_.begin(), filler_ports_.end(),
                    port_of(local)) == filler_ports_.end()) {
        ++n;
      }
    }
    return n;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> fillers_;
  std::vector<int> filler_ports_;  // their local ports
};

}  // namespace egress
