/* tonic's init: the first process of the kernel's PID namespace (criu engine) or of its
 * container (docker engine), and node's parent.
 *
 *   tonic-init [-n] [-m] [-s FD] [-f DIR] [-p PRELOAD] [-u NAME]... [-P PID] [-Q PID] [-x FILE]
 *              -- NODE ARGS...
 *
 * -n  make the namespace: unshare(CLONE_NEWPID) and fork its init; this process only
 *     tells tonic the init's host pid ("init N" on the status fd) and exits.
 * -s  the status fd (a pipe to tonic); -f: open the FIFOs of DIR instead (docker):
 *     events onto fd 4, stdout 1, stderr 2, the status fd, then cmd onto 3 (that order:
 *     see docker/tree.py).
 * -m  with -f: stderr is stdout's FIFO (tonic's stdout and stderr are one).
 * -p  LD_PRELOAD for node only (in the init it would mark fds 3 and 4 close-on-exec).
 * -u  a variable node must not see (one the docker daemon adds to every container).
 * -x  the file to run (default: NODE, looked up on PATH); NODE is its argv[0].
 * -P  node's pid in the namespace (default with -n: the init's host pid, which no
 *     other process on the host has while this namespace lives).
 * -Q  a parent for node with this pid (its process.ppid), between the init and node; it
 *     holds nothing of tonic's and ends as node does (default: node's parent is the init).
 *
 * The init is its own session leader (CRIU dumps the tree rooted at it), starts node in
 * a process group of its own with the pid asked for (clone3 with set_tid; a plain fork
 * if the kernel refuses it), reaps every process that ends in the namespace, and when
 * node ends writes how ("exit N" or "signal N") on the status fd. It prints nothing,
 * ever. It then lets go of tonic's pipes and stays, silent, while node's detached
 * children live: the namespace ends with its init, and under node they would live on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define STATUS_FD 5

static int status_fd = -1;

static void say(const char *what, long n) {
    char line[64];
    int len = snprintf(line, sizeof line, "%s %ld\n", what, n);
    if (status_fd >= 0 && write(status_fd, line, (size_t)len) < 0) { /* tonic is gone */ }
}

static int open_onto(const char *dir, const char *name, int flags, int fd) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int got = open(path, flags | O_CLOEXEC);
    if (got < 0) return -1;
    if (got == fd) return fcntl(fd, F_SETFD, 0) < 0 ? -1 : fd; /* node's: kept across exec */
    if (dup2(got, fd) < 0) return -1; /* dup2 clears close-on-exec on fd */
    close(got);
    return fd;
}

static int open_fifos(const char *dir, int merged) {
    if (open_onto(dir, "events", O_WRONLY, 4) < 0 || open_onto(dir, "stdout", O_WRONLY, 1) < 0)
        return -1;
    if (merged ? dup2(1, 2) < 0 : open_onto(dir, "stderr", O_WRONLY, 2) < 0) return -1;
    status_fd = open_onto(dir, "status", O_WRONLY, STATUS_FD);
    if (status_fd < 0) return -1;
    fcntl(status_fd, F_SETFD, FD_CLOEXEC);
    return open_onto(dir, "cmd", O_RDONLY, 3) < 0 ? -1 : 0;
}

static const char *executable;

/* A child with pid `want` in the namespace (clone3 with set_tid), else any pid: no
 * clone3, or set_tid refused (it needs CAP_SYS_ADMIN, which a container lacks). */
static pid_t clone_as(pid_t want) {
    pid_t pid = -1;
    if (want > 1) {
        struct clone_args args;
        memset(&args, 0, sizeof args);
        args.exit_signal = SIGCHLD;
        pid_t tid = want;
        args.set_tid = (unsigned long)&tid;
        args.set_tid_size = 1;
        pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
    }
    return pid < 0 ? fork() : pid;
}

static void exec_node(char **argv, const char *preload) {
    setpgid(0, 0); /* a job of its own, as a shell starts it */
    if (preload) setenv("LD_PRELOAD", preload, 1);
    if (executable)
        execv(executable, argv);
    else
        execvp(argv[0], argv);
    _exit(127); /* as a shell: not found; node's stderr says nothing more */
}

/* node's parent (its process.ppid): it ends as node did, dying of node's signal. */
static void be_parent(pid_t want, char **argv, const char *preload) {
    pid_t node = clone_as(want);
    if (node < 0) _exit(127);
    if (node == 0) exec_node(argv, preload);
    prctl(PR_SET_NAME, "tonic", 0, 0, 0);
    for (int fd = 0; fd <= STATUS_FD; fd++) close(fd);
    /* As an interactive shell does: a signal node sends its parent changes nothing. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGCHLD && sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_IGN);
    int st;
    while (waitpid(node, &st, 0) < 0)
        if (errno != EINTR) _exit(127);
    if (!WIFSIGNALED(st)) _exit(WEXITSTATUS(st));
    int sig = WTERMSIG(st);
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none); /* node dumped its core, if the limit let it */
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig);
}

static pid_t start_node(pid_t want, pid_t parent, char **argv, const char *preload) {
    if (parent <= 1) {
        pid_t pid = clone_as(want);
        if (pid == 0) exec_node(argv, preload);
        return pid;
    }
    pid_t pid = clone_as(parent);
    if (pid == 0) be_parent(want, argv, preload);
    return pid;
}

static void let_go(void) {
    /* tonic must see end-of-file on its pipes as soon as node is gone. */
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; fd++) dup2(null, fd);
    if (null > 2) close(null);
    close(3);
    close(4);
    if (status_fd > 4) close(status_fd);
    status_fd = -1;
    if (chdir("/") < 0) { /* stay where we are */ }
}

static int run_init(pid_t want, pid_t parent, char **argv, const char *preload) {
    setsid();
    pid_t node = start_node(want, parent, argv, preload); /* or node's parent */
    if (node < 0) {
        say("exit", 127);
        return 0;
    }
    for (;;) {
        int st;
        pid_t got = waitpid(-1, &st, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return 0; /* nothing left in the namespace */
        }
        if (got != node) continue;
        if (WIFSIGNALED(st))
            say("signal", WTERMSIG(st));
        else
            say("exit", WEXITSTATUS(st));
        let_go();
    }
}

int main(int argc, char **argv) {
    int opt, unshare_pid = 0, merged = 0;
    const char *fifos = NULL, *preload = NULL;
    pid_t want = 0, parent = 0;
    while ((opt = getopt(argc, argv, "+nms:f:p:u:P:Q:x:")) != -1) {
        switch (opt) {
        case 'n': unshare_pid = 1; break;
        case 'm': merged = 1; break;
        case 's': status_fd = atoi(optarg); break;
        case 'f': fifos = optarg; break;
        case 'p': preload = optarg; break;
        case 'u': unsetenv(optarg); break;
        case 'P': want = atoi(optarg); break;
        case 'Q': parent = atoi(optarg); break;
        case 'x': executable = optarg; break;
        default: return 2;
        }
    }
    if (optind >= argc) return 2;
    if (status_fd >= 0 && status_fd != STATUS_FD) { /* at a fixed fd: CRIU names it there */
        if (dup3(status_fd, STATUS_FD, O_CLOEXEC) < 0) return 2;
        close(status_fd);
    }
    if (status_fd >= 0) fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC), status_fd = STATUS_FD;
    if (fifos && open_fifos(fifos, merged) < 0) return 2;
    if (!unshare_pid) return run_init(want, parent, argv + optind, preload);
    int sync[2];
    if (pipe2(sync, O_CLOEXEC) < 0 || unshare(CLONE_NEWPID) < 0) return 2;
    pid_t init = fork();
    if (init < 0) return 2;
    if (init == 0) {
        close(sync[1]);
        pid_t host = 0;
        if (read(sync[0], &host, sizeof host) != sizeof host) _exit(2);
        close(sync[0]);
        return run_init(want ? want : host, parent, argv + optind, preload);
    }
    close(sync[0]);
    say("init", init);
    if (write(sync[1], &init, sizeof init) != sizeof init) return 2;
    return 0;
}
