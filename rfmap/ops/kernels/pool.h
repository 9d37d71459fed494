// Native worker threads for the loops whose calls take well under a millisecond (SPP's):
// waking a sleeping thread costs 50-150 us on some machines, and a Python worker also waits
// for the GIL, so rfmap/ops/_threads.py's pool cannot help them.  These threads never touch
// Python.  After a job a worker spins for a short while (kSpin) before it sleeps, so that the
// next call finds it awake, as OpenMP's and onnxruntime's workers do.
//
// A job is a function that takes work from a shared counter until none is left (common.h:
// Claims): run() calls it on the calling thread and offers it to up to threads - 1 workers;
// a worker that comes after the caller has finished takes no part, and run() returns once
// every worker that took part has returned.  One job at a time: a caller that finds the pool
// busy (another Python thread's op) runs its job alone.  After fork() the child starts afresh.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>

#include <pthread.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace rfmap {

class Pool {
  public:
    static Pool& get() {
        static std::once_flag once;
        std::call_once(once, [] { pthread_atfork(nullptr, nullptr, [] { instance() = new Pool(); }); });
        return *instance();
    }

    void run(void (*fn)(void*), void* arg, int64_t threads) {
        std::unique_lock<std::mutex> busy(job_lock_, std::try_to_lock);
        if (threads <= 1 || !busy.owns_lock()) {
            fn(arg);
            return;
        }
        const int64_t helpers = start(threads - 1);
        {
            std::lock_guard<std::mutex> guard(lock_);
            fn_ = fn;
            arg_ = arg;
            finished_.store(0, std::memory_order_relaxed);
            offered_.store(helpers, std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        fn(arg);
        const int64_t joined = helpers - offered_.exchange(0, std::memory_order_acq_rel);
        // the workers that took part finish their last claim: spin a little, then yield the
        // core (on a busy machine a worker may be waiting for one)
        for (int64_t spins = 0; finished_.load(std::memory_order_acquire) < joined; ++spins) {
            if (spins < 4096) {
                pause();
            } else {
                std::this_thread::yield();
            }
        }
    }

  private:
    static constexpr std::chrono::microseconds kSpin{500};  // awake after a job, before sleeping

    static Pool*& instance() {
        static Pool* pool = new Pool();  // never destroyed: its threads outlive static destructors
        return pool;
    }

    static void pause() {
#if defined(__SSE2__)
        _mm_pause();
#else
        std::this_thread::yield();
#endif
    }

    // Start workers until there are `count`; returns how many there are (fewer if the system
    // refuses a thread: the job then runs on those there are).
    int64_t start(int64_t count) {
        std::lock_guard<std::mutex> guard(lock_);
        try {
            while (started_ < count) {
                std::thread(&Pool::work, this).detach();
                ++started_;
            }
        } catch (const std::system_error&) {
        }
        return std::min(started_, count);
    }

    void work() {
        uint64_t seen = generation_.load(std::memory_order_acquire);
        for (;;) {
            const auto until = std::chrono::steady_clock::now() + kSpin;
            while (generation_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < until) pause();
            if (generation_.load(std::memory_order_acquire) == seen) {
                std::unique_lock<std::mutex> guard(lock_);
                wake_.wait(guard, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            }
            seen = generation_.load(std::memory_order_acquire);
            int64_t offered = offered_.load(std::memory_order_acquire);
            while (offered > 0 && !offered_.compare_exchange_weak(offered, offered - 1, std::memory_order_acq_rel)) {
            }
            if (offered <= 0) continue;  // the job is done, or enough workers took part
            void (*fn)(void*);
            void* arg;
            {
                std::lock_guard<std::mutex> guard(lock_);
                fn = fn_;
                arg = arg_;
            }
            fn(arg);
            finished_.fetch_add(1, std::memory_order_acq_rel);
        }
    }

    std::mutex job_lock_, lock_;
    std::condition_variable wake_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int64_t> offered_{0}, finished_{0};
    void (*fn_)(void*) = nullptr;
    void* arg_ = nullptr;
    int64_t started_ = 0;
};

}  // namespace rfmap
