// StreamPump without gRPC: a fake Writer plays the transport, the test (or a
// thread of its own) plays the worker. Runs under TSan.
#include "service/pool/stream_pump.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fakes/wait_until.h"

namespace egress {
namespace {

using std::chrono::milliseconds;

// Records what the pump asks of the transport.
class FakeWriter : public StreamPump::Writer {
 public:
  void StartBodyWrite(std::string bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_FALSE(in_flight_) << "two writes in flight";
    in_flight_ = true;
    writes_.push_back(std::move(bytes));
    cv_.notify_all();
  }
  void Finish(const absl::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++finishes_;
    status_ = status;
    cv_.notify_all();
  }

  std::vector<std::string> writes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return writes_;
  }
  int finishes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finishes_;
  }
  absl::Status status() const {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  // The test's stand-in for gRPC completing the write in flight.
  void Complete(StreamPump& pump, bool ok = true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_ = false;
    }
    pump.OnWriteDone(ok);
  }
  // The head write is started by the reactor itself, not through the Writer.
  void HeadStarted() {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_ = true;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool in_flight_ = false;
  std::vector<std::string> writes_;
  int finishes_ = 0;
  absl::Status status_;
};

class StreamPumpTest : public ::testing::Test {
 protected:
  std::unique_ptr<StreamPump> MakePump(size_t max_chunk = 8,
                                       milliseconds idle = milliseconds(5000),
                                       size_t max_bytes = 0) {
    return std::make_unique<StreamPump>(
        writer_, RealClock::Get(),
        StreamPump::Limits{max_chunk, idle, max_bytes});
  }
  // Starts the head write, as the reactor does.
  void Head(StreamPump& pump) {
    ASSERT_TRUE(pump.StartHead());
    writer_.HeadStarted();
  }

  FakeWriter writer_;
};

TEST_F(StreamPumpTest, BytesGoOutAsSoonAsNoWriteIsInFlight) {
  auto pump = MakePump();
  Head(*pump);
  ASSERT_TRUE(pump->Push("a", 1));
  EXPECT_TRUE(writer_.writes().empty());  // the head is still in flight
  writer_.Complete(*pump);
  EXPECT_EQ(writer_.writes(), std::vector<std::string>{"a"});
  writer_.Complete(*pump);
  // Nothing in flight: the next event leaves at once, without waiting to
  // fill a chunk.
  ASSERT_TRUE(pump->Push("b", 1));
  EXPECT_EQ(writer_.writes(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(StreamPumpTest, BytesGatherWhileAWriteIsInFlightUpToAChunk) {
  auto pump = MakePump(/*max_chunk=*/4);
  Head(*pump);
  ASSERT_TRUE(pump->Push("ab", 2));
  ASSERT_TRUE(pump->Push("c", 1));
  writer_.Complete(*pump);  // the head
  EXPECT_EQ(writer_.writes(), std::vector<std::string>{"abc"});
}

TEST_F(StreamPumpTest, AFullChunkBlocksTheWorkerUntilTheCallerTakesAWrite) {
  auto pump = MakePump(/*max_chunk=*/4);
  Head(*pump);
  std::atomic<bool> returned{false};
  std::thread worker([&] {
    EXPECT_TRUE(pump->Push("abcdef", 6));  // over a chunk, head in flight
    returned = true;
  });
  // Push waits for the write in flight instead of returning.
  ASSERT_TRUE(WaitUntil([&] { return pump->workers_waiting() == 1; },
                        std::chrono::seconds(10)));
  EXPECT_FALSE(returned.load()) << "Push did not wait for the write in flight";
  writer_.Complete(*pump);  // the head: the first 4 bytes go out
  worker.join();
  EXPECT_TRUE(returned.load());
  EXPECT_EQ(writer_.writes(), std::vector<std::string>{"abcd"});
  writer_.Complete(*pump);
  EXPECT_EQ(writer_.writes(), (std::vector<std::string>{"abcd", "ef"}));
}

TEST_F(StreamPumpTest, ACallerThatReadsNothingForTheIdleTimeoutEndsTheStream) {
  auto pump = MakePump(/*max_chunk=*/4, milliseconds(50));
  Head(*pump);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(pump->Push("abcdef", 6));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(50));
  EXPECT_EQ(pump->abort_status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(pump->AbandonReason(pump->abort_status()),
            StreamAbortReason::kSlowReader);
}

TEST_F(StreamPumpTest, TheCallsDeadlineAlsoEndsTheWait) {
  auto pump = MakePump(/*max_chunk=*/4, milliseconds(60000));
  pump->SetDeadline(Deadline::In(RealClock::Get(), milliseconds(50)));
  Head(*pump);
  EXPECT_FALSE(pump->Push("abcdef", 6));  // returns after 50 ms, not 60 s
  EXPECT_EQ(pump->AbandonReason(pump->abort_status()),
            StreamAbortReason::kSlowReader);
}

TEST_F(StreamPumpTest, BytesOverTheLimitAreRefused) {
  auto pump = MakePump(8, milliseconds(5000), /*max_bytes=*/5);
  Head(*pump);
  ASSERT_TRUE(pump->Push("abc", 3));
  EXPECT_FALSE(pump->Push("def", 3));
  EXPECT_EQ(pump->abort_status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(pump->abort_status().message().find("--max_stream_bytes=5"),
            std::string::npos);
  EXPECT_EQ(pump->AbandonReason(pump->abort_status()),
            StreamAbortReason::kTooLarge);
}

TEST_F(StreamPumpTest, CancelWakesABlockedWorkerAndRefusesWhatFollows) {
  auto pump = MakePump(/*max_chunk=*/4);
  Head(*pump);
  std::promise<bool> pushed;
  std::thread worker([&] { pushed.set_value(pump->Push("abcdef", 6)); });
  ASSERT_TRUE(WaitUntil([&] { return pump->workers_waiting() == 1; },
                        std::chrono::seconds(10)));
  pump->Cancel(absl::CancelledError("the caller cancelled"));
  EXPECT_FALSE(pushed.get_future().get());
  worker.join();
  EXPECT_EQ(pump->abort_status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(pump->Push("g", 1));
  EXPECT_EQ(pump->AbandonReason(absl::CancelledError("x")),
            StreamAbortReason::kCancelled);
}

TEST_F(StreamPumpTest, AStreamCancelledBeforeItsHeadSendsNothing) {
  auto pump = MakePump();
  pump->Cancel(absl::DeadlineExceededError("the deadline passed"));
  EXPECT_FALSE(pump->StartHead());
  EXPECT_EQ(pump->abort_status().code(), absl::StatusCode::kDeadlineExceeded);
  pump->FinishWhenDrained(pump->abort_status());
  EXPECT_EQ(writer_.finishes(), 1);
  EXPECT_TRUE(writer_.writes().empty());
}

TEST_F(StreamPumpTest, FinishWaitsUntilEveryPendingByteIsWritten) {
  auto pump = MakePump();
  Head(*pump);
  ASSERT_TRUE(pump->Push("xyz", 3));
  pump->FinishWhenDrained(absl::OkStatus());
  EXPECT_EQ(writer_.finishes(), 0);  // the head is still in flight
  writer_.Complete(*pump);           // head done: "xyz" goes out
  EXPECT_EQ(writer_.finishes(), 0);
  writer_.Complete(*pump);  // "xyz" done: now finish
  EXPECT_EQ(writer_.finishes(), 1);
  EXPECT_TRUE(writer_.status().ok());
  EXPECT_EQ(writer_.writes(), std::vector<std::string>{"xyz"});
}

TEST_F(StreamPumpTest, FinishIsImmediateWhenNothingWasStreamed) {
  auto pump = MakePump();
  pump->FinishWhenDrained(absl::PermissionDeniedError("no"));
  EXPECT_EQ(writer_.finishes(), 1);
  EXPECT_EQ(writer_.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(pump->status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(StreamPumpTest, AFailedWriteDropsWhatIsPendingAndStopsTheWorker) {
  auto pump = MakePump();
  Head(*pump);
  ASSERT_TRUE(pump->Push("abc", 3));
  writer_.Complete(*pump, /*ok=*/false);  // the call is gone
  EXPECT_TRUE(writer_.writes().empty());
  EXPECT_FALSE(pump->Push("d", 1));
  // gRPC reported the failed write before (or without) OnCancel: the
  // exchange is still abandoned with a CANCELLED status, never an OK one
  // (ASan's timing once made a cancelled 1 GiB stream end OK at 1 MiB).
  EXPECT_EQ(pump->abort_status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(pump->AbandonReason(pump->abort_status()),
            StreamAbortReason::kCancelled);
  pump->FinishWhenDrained(absl::CancelledError("gone"));
  EXPECT_EQ(writer_.finishes(), 1);
}

// A worker and a transport thread at full speed: every byte arrives once and
// in order, one write at a time, and Finish comes once, after the last write.
TEST_F(StreamPumpTest, ConcurrentWorkerAndTransportLoseNothing) {
  class AsyncWriter : public StreamPump::Writer {
   public:
    void StartBodyWrite(std::string bytes) override {
      std::lock_guard<std::mutex> lock(mu);
      EXPECT_FALSE(in_flight);
      in_flight = true;
      received += bytes;
      ++writes;
      cv.notify_all();
    }
    void Finish(const absl::Status& status) override {
      std::lock_guard<std::mutex> lock(mu);
      EXPECT_FALSE(in_flight);
      ++finishes;
      cv.notify_all();
    }
    std::mutex mu;
    std::condition_variable cv;
    bool in_flight = false;
    std::string received;
    int writes = 0;
    int finishes = 0;
  } writer;
  StreamPump pump(writer, RealClock::Get(),
                  StreamPump::Limits{64, std::chrono::seconds(10), 0});
  std::atomic<bool> done{false};
  std::thread transport([&] {
    std::unique_lock<std::mutex> lock(writer.mu);
    while (writer.finishes == 0) {
      writer.cv.wait_for(lock, milliseconds(10));
      if (writer.in_flight) {
        writer.in_flight = false;
        lock.unlock();
        pump.OnWriteDone(true);
        lock.lock();
      }
    }
    done = true;
  });
  std::string sent;
  for (int i = 0; i < 3000; ++i) {
    const std::string piece = std::to_string(i) + ",";
    sent += piece;
    ASSERT_TRUE(pump.Push(piece.data(), piece.size()));
  }
  pump.FinishWhenDrained(absl::OkStatus());
  transport.join();
  EXPECT_TRUE(done.load());
  std::lock_guard<std::mutex> lock(writer.mu);
  EXPECT_EQ(writer.received, sent);
  EXPECT_EQ(writer.finishes, 1);
  EXPECT_GT(writer.writes, 1);
}

}  // namespace
}  // namespace egress
