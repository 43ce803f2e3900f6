/* tonic's clock shim, preloaded into node by the criu engine (LD_PRELOAD).
 *
 * While the kernel waits at a pause (a blocking read(2) on the command pipe, fd 1021),
 * tonic checkpoints the process; that takes tens of milliseconds that plain node would
 * never spend between two cells. The monotonic clocks node's timers run on would see
 * that time pass, and a setTimeout of 5 ms in one cell would fire before one of 1 ms
 * in the next. The shim stops the monotonic clocks for the whole process while it waits
 * there, and takes the time paused out of them for good afterwards. After a CRIU restore
 * (into a time namespace that resumes the clock where the dump left it) the same holds.
 *
 * It also moves tonic's channels, fds 3 and 4, to fds 1021 and 1022, close-on-exec (the
 * kernel looks there first): the notebook's child processes do not inherit them, and the
 * notebook's own fds 3 and 4 are free, as in plain node. Where it cannot (a limit on open
 * files of 1022 or less), they stay on 3 and 4, marked close-on-exec.
 * CLOCK_REALTIME (Date.now) is left alone.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CMD_FD 3
#define EVENTS_FD 4
#define CMD_FD_MOVED 1021
#define EVENTS_FD_MOVED 1022

static int cmd_fd = CMD_FD;   /* where the command pipe is */

static int64_t offset_ns;     /* time paused so far */
static int64_t paused_at_ns;  /* real monotonic time when the current pause began, or 0 */

static int64_t real_monotonic(void) {
    struct timespec ts;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int is_monotonic(clockid_t id) {
    return id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE || id == CLOCK_MONOTONIC_RAW ||
           id == CLOCK_BOOTTIME;
}

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef ssize_t (*read_fn)(int, void *, size_t);

int clock_gettime(clockid_t id, struct timespec *ts) {
    static clock_gettime_fn real;
    if (!real) real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc != 0 || !is_monotonic(id)) return rc;
    int64_t shift = __atomic_load_n(&offset_ns, __ATOMIC_ACQUIRE);
    int64_t paused = __atomic_load_n(&paused_at_ns, __ATOMIC_ACQUIRE);
    int64_t now = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
    if (paused != 0 && now > paused) now = paused; /* frozen while paused */
    now -= shift;
    ts->tv_sec = now / 1000000000;
    ts->tv_nsec = now % 1000000000;
    return rc;
}

ssize_t read(int fd, void *buf, size_t count) {
    static read_fn real;
    if (!real) real = (read_fn)dlsym(RTLD_NEXT, "read");
    if (fd != cmd_fd) return real(fd, buf, count);
    int64_t began = real_monotonic();
    __atomic_store_n(&paused_at_ns, began, __ATOMIC_RELEASE);
    ssize_t n = real(fd, buf, count);
    int64_t ended = real_monotonic();
    if (ended > began) __atomic_add_fetch(&offset_ns, ended - began, __ATOMIC_ACQ_REL);
    __atomic_store_n(&paused_at_ns, 0, __ATOMIC_RELEASE);
    return n;
}

__attribute__((constructor)) static void tonic_clockshim_init(void) {
    if (dup3(CMD_FD, CMD_FD_MOVED, O_CLOEXEC) == CMD_FD_MOVED) {
        if (dup3(EVENTS_FD, EVENTS_FD_MOVED, O_CLOEXEC) == EVENTS_FD_MOVED) {
            close(CMD_FD);
            close(EVENTS_FD);
            cmd_fd = CMD_FD_MOVED;
            return;
        }
        close(CMD_FD_MOVED);
    }
    fcntl(CMD_FD, F_SETFD, FD_CLOEXEC);
    fcntl(EVENTS_FD, F_SETFD, FD_CLOEXEC);
}
