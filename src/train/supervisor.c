/* Worker process management for keel train --supervise. */
#include "supervisor.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "inject.h"

#include "checkpoint.h"
#include "events.h"

/* A worker that fails twice in a row without a newer checkpoint appearing is
 * taken to be failing on the checkpoint itself: it is set aside as bad-step-N
 * so the next attempt falls back to the one before (llnl/scr's remedy). */
static void set_aside_if_stuck(const keel_train_opts *o, long before, int *stuck) {
  long after;
  keel_ckpt_latest_good(o->out, &after, NULL);
  if (after < 0 || after != before) {
    *stuck = 0;
    return;
  }
  if (++*stuck < 2) return;
  char from[4096], to[4096];
  snprintf(from, sizeof from, "%s/ckpt/step-%ld", o->out, after);
  snprintf(to, sizeof to, "%s/ckpt/bad-step-%ld", o->out, after);
  if (rename(from, to) == 0) {
    keel_event(o->out, "checkpoint_set_aside", "\"step\": %ld, \"reason\": \"two failed restarts from it\"", after);
    fprintf(stderr, "keel supervise: two restarts from step %ld failed; setting that checkpoint aside\n", after);
  }
  *stuck = 0;
}

keel_status keel_supervise(const keel_train_opts *o, const keel_supervise_opts *so) {
  signal(SIGPIPE, SIG_IGN);
  int stuck = 0;
  for (int attempt = 0;; attempt++) {
    long resume_from;
    keel_ckpt_latest_good(o->out, &resume_from, NULL);
    int fds[2];
    if (pipe(fds) != 0) return keel_fail(KEEL_ERR_IO, "supervisor: pipe failed: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return keel_fail(KEEL_ERR_IO, "supervisor: fork failed: %s", strerror(errno));
    if (pid == 0) { /* the worker */
      close(fds[0]);
      keel_train_opts w = *o;
      w.heartbeat_fd = fds[1];
      char *again = NULL;
      if (attempt > 0) /* faults were injected into the first attempt; recurring ones ('!') stay */
        w.inject = again = keel_inject_persistent(o->inject ? o->inject : getenv("KEEL_INJECT"));
      keel_status st = keel_train_run(&w);
      free(again);
      if (st) fprintf(stderr, "keel train: %s\n", keel_errmsg());
      fflush(NULL);
      _exit(st == KEEL_OK ? 0 : (st == KEEL_ERR_ARG || st == KEEL_ERR_FORMAT) ? 2 : 1);
    }
    close(fds[1]);
    keel_event(o->out, "worker_start", "\"attempt\": %d, \"worker\": %ld", attempt, (long)pid);
    int timed_out = 0;
    for (;;) {
      struct pollfd p = {fds[0], POLLIN, 0};
      int r = poll(&p, 1, (int)(so->watchdog_s * 1000));
      if (r == 0) { /* no heartbeat in time: a hung worker */
        timed_out = 1;
        keel_event(o->out, "watchdog_timeout", "\"worker\": %ld, \"seconds\": %.1f", (long)pid, so->watchdog_s);
        fprintf(stderr, "keel supervise: no heartbeat for %.0fs; killing worker %ld\n", so->watchdog_s, (long)pid);
        kill(pid, SIGKILL);
        break;
      }
      if (r < 0 && errno == EINTR) continue;
      char buf[256];
      ssize_t n = read(fds[0], buf, sizeof buf);
      if (n <= 0) break; /* the worker closed its end: it exited */
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      keel_event(o->out, "worker_done", "\"worker\": %ld", (long)pid);
      return KEEL_OK;
    }
    if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 2) { /* bad input: a restart cannot help */
      keel_event(o->out, "give_up", "\"reason\": \"the worker reported bad input\"");
      return keel_fail(KEEL_ERR_ARG, "the training worker stopped on bad input (see above)");
    }
    char why[64];
    if (timed_out) snprintf(why, sizeof why, "hung");
    else if (WIFSIGNALED(status)) snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(status));
    else snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(status));
    keel_event(o->out, "worker_exit", "\"worker\": %ld, \"reason\": \"%s\"", (long)pid, why);
    if (attempt > 0 && resume_from >= 0) set_aside_if_stuck(o, resume_from, &stuck);
    if (attempt >= so->max_restarts) {
      keel_event(o->out, "give_up", "\"reason\": \"%d restarts used\"", so->max_restarts);
      return keel_fail(KEEL_ERR_IO, "the training worker %s and the restart budget (%d) is spent", why, so->max_restarts);
    }
    double wait = so->backoff_s;
    for (int i = 0; i < attempt && wait < 60; i++) wait *= 2;
    if (wait > 60) wait = 60;
    fprintf(stderr, "keel supervise: worker %s; restarting in %.1fs (%d of %d)\n", why, wait, attempt + 1,
            so->max_restarts);
    keel_event(o->out, "restart", "\"attempt\": %d, \"after_seconds\": %.1f, \"reason\": \"%s\"", attempt + 1, wait, why);
    usleep((useconds_t)(wait * 1e6));
  }
}
