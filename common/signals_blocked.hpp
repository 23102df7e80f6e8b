#pragma once
// Starting helper threads with every signal blocked.

#include <csignal>
#include <pthread.h>

namespace dc {

// While alive, every signal is blocked in the calling thread, and threads started meanwhile
// inherit that mask. So signals keep going to the io thread, whose asio::signal_set waits for
// them, and never wake a helper thread asleep on a lock or a disk (on a worker, each job's
// SIGCHLD did: a context switch and a cross-CPU wake-up per job), nor interrupt its write(2).
class SignalsBlocked {
public:
  SignalsBlocked()
  {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &m_previous);
  }
  ~SignalsBlocked() { pthread_sigmask(SIG_SETMASK, &m_previous, nullptr); }
  SignalsBlocked(const SignalsBlocked&) = delete;
  SignalsBlocked& operator=(const SignalsBlocked&) = delete;

private:
  sigset_t m_previous;
};

} // namespace dc
