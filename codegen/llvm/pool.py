"""A thread pool in LLVM IR, so a kernel's rows are shared by every core without Python.

The Python pool it replaces cost ~45 us per kernel (a future, a condition variable and the
GIL twice), as much as a layer_norm's second core saves. Here the workers are native threads
that spin for a while after each job, so back-to-back kernels start on every core within a
fraction of a microsecond; an idle worker yields, then sleeps on a condition variable.

How long a worker stays awake is measured in time (the x86 time-stamp counter), not in spins:
a pause takes ~10 cycles on some cores and ~140 on others, and the 2000 pauses once counted
here lasted ~20 us on this project's machines, while an eager training step runs ember's
Python for ~50-500 us between two parallel kernels or GEMMs. Each job found its worker asleep,
and waking it (a futex, on a virtual machine an interrupt to a halted vCPU) came to ~40 us,
as much as a layer_norm's second core saves. PyTorch's OpenMP workers spin ~300,000 rounds.

    ember_parallel_for(task, argv, rows, chunks)

runs `task(argv, start, end)` over [0, rows) cut into `chunks` equal ranges. The chunks are
claimed one at a time by the caller and the workers alike, so the caller never waits for a
worker that is asleep or descheduled: it runs whatever nobody has claimed, then waits only for
chunks already running elsewhere. A second thread that calls while a job runs (two Python
threads at once) runs its own rows itself.

The job's state is one 64-bit word, `claim` = generation << 32 | next chunk. The caller writes
the job's fields while the word is closed (chunk = CLOSED, past any count), then opens it with
a new generation; a worker reads the fields after seeing an open word and keeps them only if
its compare-and-swap of that very word succeeds, so it never runs a chunk with another job's
fields (the generation makes every opened word new).

    ember_pool_start(workers) -> workers started
    ember_pool_stop()         (returns once every worker has left; called at exit, before
                               the JIT code they run is freed)
    ember_pool_park()         idle workers sleep at once instead of spinning, until the next
                              job (called before a BLAS call, whose threads need the cores:
                              runtime/threads.py)
    ember_blas_jobs(...)      OpenBLAS's threads callback (openblas_set_threads_callback_function):
                              its jobs of one call run on the caller and the workers, all at
                              once, since they wait for each other; where the pool is taken
                              (another caller's job) or short of workers (a forked child),
                              on threads made for the call

Linux and glibc (pthread_mutex_t and pthread_cond_t fit the 128 bytes reserved for each).
"""

from __future__ import annotations

# how long an idle worker spins with a pause, then with sched_yield (which leaves the core to
# any other thread that wants it), before it sleeps: time-stamp counter ticks (~2.6 GHz on the
# machines measured: ~1 ms and ~3 ms), or, without one (not x86), spins of the idle loop
SPIN_TICKS = 2_500_000
YIELD_TICKS = 8_000_000
SPIN_PAUSES = 20_000  # without a time-stamp counter
SPIN_YIELDS = 3_000

CLOSED = 0xFFFFFFFF


def module_ir(triple: str) -> str:
    x86 = triple.startswith(("x86_64", "i686", "i386"))
    pause = "call void @llvm.x86.sse2.pause()" if x86 else ""
    declare_pause = "declare void @llvm.x86.sse2.pause()" if x86 else ""
    if x86:
        # the worker's clock: the time-stamp counter (rdtsc; LLVM's readcyclecounter is a
        # privileged counter on some other targets)
        clock = "%now = call i64 @llvm.readcyclecounter()"
        declare_clock = "declare i64 @llvm.readcyclecounter()"
        spin, yields = SPIN_TICKS, YIELD_TICKS
    else:
        clock = "%now = add i64 %since, %spins"  # spins stand in for time
        declare_clock = ""
        spin, yields = SPIN_PAUSES, SPIN_PAUSES + SPIN_YIELDS
    return _IR.format(pause=pause, declare_pause=declare_pause, closed=CLOSED,
                      clock=clock, declare_clock=declare_clock, spin=spin, yields=yields)


_IR = r"""
; ember's native thread pool (codegen/llvm/pool.py)

@claim = internal global i64 {closed}, align 8     ; generation << 32 | next chunk
@done = internal global i64 0, align 8              ; chunks of the open job finished
@task = internal global ptr null, align 8
@argv = internal global ptr null, align 8
@rows = internal global i64 0, align 8
@chunks = internal global i64 0, align 8
@busy = internal global i32 0, align 4              ; a caller owns the job slot
@stop = internal global i32 0, align 4
@alive = internal global i32 0, align 4             ; workers running
@sleepers = internal global i32 0, align 4          ; workers in pthread_cond_wait
@park = internal global i32 0, align 4              ; idle workers skip the spin and sleep
@mutex = internal global [16 x i64] zeroinitializer, align 16
@cond = internal global [16 x i64] zeroinitializer, align 16
@blas_mutex = internal global [16 x i64] zeroinitializer, align 16  ; one BLAS job set at a time
@owner = internal global i32 0, align 4             ; the process whose workers these are
@blas_first = internal global i32 0, align 4        ; OpenBLAS's thread number of job 0

declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_detach(i64)
declare i32 @pthread_mutex_init(ptr, ptr)
declare i32 @pthread_cond_init(ptr, ptr)
declare i32 @pthread_mutex_lock(ptr)
declare i32 @pthread_mutex_unlock(ptr)
declare i32 @pthread_cond_wait(ptr, ptr)
declare i32 @pthread_cond_broadcast(ptr)
declare i32 @sched_yield()
declare i32 @pthread_join(i64, ptr)
declare i32 @getpid()
{declare_pause}
{declare_clock}

; claim chunks of generation %gen and run them until none is left
define internal void @run_chunks(i64 %gen) nounwind {{
entry:
  br label %loop
loop:
  %c = load atomic i64, ptr @claim acquire, align 8
  %g = lshr i64 %c, 32
  %same = icmp eq i64 %g, %gen
  br i1 %same, label %check, label %out
check:
  %idx = and i64 %c, 4294967295
  %n = load atomic i64, ptr @chunks monotonic, align 8
  %more = icmp ult i64 %idx, %n
  br i1 %more, label %take, label %out
take:
  %t = load atomic ptr, ptr @task monotonic, align 8
  %a = load atomic ptr, ptr @argv monotonic, align 8
  %r = load atomic i64, ptr @rows monotonic, align 8
  %next = add i64 %c, 1
  %pair = cmpxchg ptr @claim, i64 %c, i64 %next acq_rel monotonic
  %ok = extractvalue {{ i64, i1 }} %pair, 1
  br i1 %ok, label %work, label %loop
work:
  %lo.p = mul i64 %r, %idx
  %lo = udiv i64 %lo.p, %n
  %idx1 = add i64 %idx, 1
  %hi.p = mul i64 %r, %idx1
  %hi = udiv i64 %hi.p, %n
  call void %t(ptr %a, i64 %lo, i64 %hi)
  %unused = atomicrmw add ptr @done, i64 1 release
  br label %loop
out:
  ret void
}}

; a worker starts from generation 0, the one ember_pool_start leaves: had it read @claim when
; its thread began running, a job published in between (the first GEMM right after the start)
; would have looked seen to it, and OpenBLAS's jobs, which wait for each other, would hang
; %since is the clock when the worker last became idle (0: not yet read; the first idle
; round reads it), %spins the idle rounds since then
define internal ptr @worker(ptr %unused) nounwind {{
entry:
  br label %wait
wait:
  %seen = phi i64 [ 0, %entry ], [ %g, %run ],
      [ %seen, %paused ], [ %seen, %yielded ], [ %seen, %woke ]
  %spins = phi i64 [ 0, %entry ], [ 0, %run ],
      [ %spins1, %paused ], [ %spins1, %yielded ], [ 0, %woke ]
  %since = phi i64 [ 0, %entry ], [ 0, %run ],
      [ %since1, %paused ], [ %since1, %yielded ], [ 0, %woke ]
  %c = load atomic i64, ptr @claim acquire, align 8
  %g = lshr i64 %c, 32
  %new = icmp ne i64 %g, %seen
  br i1 %new, label %run, label %idle
run:
  call void @run_chunks(i64 %g)
  br label %wait
idle:
  %s = load atomic i32, ptr @stop acquire, align 4
  %stopping = icmp ne i32 %s, 0
  br i1 %stopping, label %exit, label %parked
parked:
  %pk = load atomic i32, ptr @park monotonic, align 4
  %parking = icmp ne i32 %pk, 0
  br i1 %parking, label %sleep, label %spin
spin:
  %spins1 = add i64 %spins, 1
  {clock}
  %first = icmp eq i64 %spins, 0
  %since1 = select i1 %first, i64 %now, i64 %since
  %elapsed = sub i64 %now, %since1
  %short = icmp ult i64 %elapsed, {spin}
  br i1 %short, label %paused, label %long
paused:
  {pause}
  br label %wait
long:
  %medium = icmp ult i64 %elapsed, {yields}
  br i1 %medium, label %yielded, label %sleep
yielded:
  %y = call i32 @sched_yield()
  br label %wait
sleep:
  %l = call i32 @pthread_mutex_lock(ptr @mutex)
  %s0 = atomicrmw add ptr @sleepers, i32 1 seq_cst
  br label %check
check:
  %cc = load atomic i64, ptr @claim seq_cst, align 8
  %gg = lshr i64 %cc, 32
  %changed = icmp ne i64 %gg, %seen
  %st = load atomic i32, ptr @stop seq_cst, align 4
  %st1 = icmp ne i32 %st, 0
  %leave = or i1 %changed, %st1
  br i1 %leave, label %woke, label %block
block:
  %w = call i32 @pthread_cond_wait(ptr @cond, ptr @mutex)
  br label %check
woke:
  %s1 = atomicrmw sub ptr @sleepers, i32 1 seq_cst
  %u = call i32 @pthread_mutex_unlock(ptr @mutex)
  br label %wait
exit:
  %a = atomicrmw sub ptr @alive, i32 1 release
  ret ptr null
}}

; run a job on the caller and the workers; the caller owns @busy and gives it back
define internal void @run_job(ptr %t, ptr %a, i64 %rows, i64 %n) nounwind {{
entry:
  %c = load atomic i64, ptr @claim monotonic, align 8
  %g.old = lshr i64 %c, 32
  %g.next = add i64 %g.old, 1
  %g = and i64 %g.next, 4294967295
  store atomic ptr %t, ptr @task monotonic, align 8
  store atomic ptr %a, ptr @argv monotonic, align 8
  store atomic i64 %rows, ptr @rows monotonic, align 8
  store atomic i64 %n, ptr @chunks monotonic, align 8
  store atomic i64 0, ptr @done monotonic, align 8
  store atomic i32 0, ptr @park monotonic, align 4
  %open = shl i64 %g, 32
  store atomic i64 %open, ptr @claim seq_cst, align 8
  %sl = load atomic i32, ptr @sleepers seq_cst, align 4
  %any = icmp ne i32 %sl, 0
  br i1 %any, label %wake, label %work
wake:
  %l = call i32 @pthread_mutex_lock(ptr @mutex)
  %b = call i32 @pthread_cond_broadcast(ptr @cond)
  %u = call i32 @pthread_mutex_unlock(ptr @mutex)
  br label %work
work:
  call void @run_chunks(i64 %g)
  br label %join
join:
  %d = load atomic i64, ptr @done acquire, align 8
  %all = icmp uge i64 %d, %n
  br i1 %all, label %close, label %pause
pause:
  {pause}
  br label %join
close:
  %closed = or i64 %open, {closed}
  store atomic i64 %closed, ptr @claim release, align 8
  store atomic i32 0, ptr @busy release, align 4
  ret void
}}

; the job slot taken for this caller, or false while another caller's job holds it
define internal i1 @take_slot() nounwind {{
entry:
  %pair = cmpxchg ptr @busy, i32 0, i32 1 acquire monotonic
  %mine = extractvalue {{ i32, i1 }} %pair, 1
  ret i1 %mine
}}

define void @ember_parallel_for(ptr %t, ptr %a, i64 %rows, i64 %n) nounwind {{
entry:
  %few = icmp ult i64 %n, 2
  br i1 %few, label %serial, label %own
own:
  %mine = call i1 @take_slot()
  br i1 %mine, label %job, label %serial
job:
  call void @run_job(ptr %t, ptr %a, i64 %rows, i64 %n)
  ret void
serial:
  call void %t(ptr %a, i64 0, i64 %rows)
  ret void
}}

; -- OpenBLAS's jobs on this pool (openblas_set_threads_callback_function) ------------------
; A BLAS job set is {{ dojob, data, elsize, arg }}: dojob(i, data + i * elsize, arg) for each
; job i. OpenBLAS's jobs of one GEMM wait for each other, so they must all run at once: on the
; caller and the workers when the pool is free and has enough of them, else on threads made
; for this call. Job i runs as OpenBLAS's thread number @blas_first + i, which picks its
; per-thread state and buffer, so one job set runs at a time (@blas_mutex); the numbers start
; past OpenBLAS's own workers', whose state they would otherwise mark busy: a worker that sees
; its state busy when its spin times out spins on instead of sleeping.

define internal void @blas_task(ptr %set, i64 %start, i64 %end) nounwind {{
entry:
  %fn.p = getelementptr inbounds {{ ptr, ptr, i64, i32 }}, ptr %set, i32 0, i32 0
  %data.p = getelementptr inbounds {{ ptr, ptr, i64, i32 }}, ptr %set, i32 0, i32 1
  %size.p = getelementptr inbounds {{ ptr, ptr, i64, i32 }}, ptr %set, i32 0, i32 2
  %arg.p = getelementptr inbounds {{ ptr, ptr, i64, i32 }}, ptr %set, i32 0, i32 3
  %fn = load ptr, ptr %fn.p, align 8
  %data = load ptr, ptr %data.p, align 8
  %size = load i64, ptr %size.p, align 8
  %arg = load i32, ptr %arg.p, align 4
  br label %loop
loop:
  %i = phi i64 [ %start, %entry ], [ %i1, %body ]
  %more = icmp ult i64 %i, %end
  br i1 %more, label %body, label %out
body:
  %offset = mul i64 %i, %size
  %item = getelementptr inbounds i8, ptr %data, i64 %offset
  %i32 = trunc i64 %i to i32
  %first = load atomic i32, ptr @blas_first monotonic, align 4
  %number = add i32 %first, %i32
  call void %fn(i32 %number, ptr %item, i32 %arg)
  %i1 = add i64 %i, 1
  br label %loop
out:
  ret void
}}

; one job on a thread of its own: %job is {{ set, index }}
define internal ptr @blas_thread(ptr %job) nounwind {{
entry:
  %set = load ptr, ptr %job, align 8
  %i.p = getelementptr inbounds {{ ptr, i64 }}, ptr %job, i32 0, i32 1
  %i = load i64, ptr %i.p, align 8
  %i1 = add i64 %i, 1
  call void @blas_task(ptr %set, i64 %i, i64 %i1)
  ret ptr null
}}

define void @ember_blas_jobs(i32 %sync, ptr %dojob, i32 %numjobs, i64 %elsize, ptr %data,
                             i32 %arg) nounwind {{
entry:
  %set = alloca {{ ptr, ptr, i64, i32 }}, align 8
  %fn.p = getelementptr inbounds {{ ptr, ptr, i64, i32 }}, ptr %set, i32 0, i32 0
  store ptr %dojob, ptr %fn.p, align 8
  %data.p = getelementptr inbounds {{ ptr, ptr, i64, i32 }}, ptr %set, i32 0, i32 1
  store ptr %data, ptr %data.p, align 8
  %size.p = getelementptr inbounds {{ ptr, ptr, i64, i32 }}, ptr %set, i32 0, i32 2
  store i64 %elsize, ptr %size.p, align 8
  %arg.p = getelementptr inbounds {{ ptr, ptr, i64, i32 }}, ptr %set, i32 0, i32 3
  store i32 %arg, ptr %arg.p, align 4
  %n = sext i32 %numjobs to i64
  %lk = call i32 @pthread_mutex_lock(ptr @blas_mutex)
  %one = icmp slt i64 %n, 2
  br i1 %one, label %alone, label %ours
alone:
  call void @blas_task(ptr %set, i64 0, i64 %n)
  br label %out
ours:
  ; a forked child has none of the workers its parent's counts speak of
  %pid = call i32 @getpid()
  %owner = load atomic i32, ptr @owner monotonic, align 4
  %here = icmp eq i32 %pid, %owner
  %alive = load atomic i32, ptr @alive acquire, align 4
  %alive64 = sext i32 %alive to i64
  %others = sub i64 %n, 1
  %enough = icmp uge i64 %alive64, %others
  %usable = and i1 %here, %enough
  br i1 %usable, label %own, label %spawn
own:
  %mine = call i1 @take_slot()
  br i1 %mine, label %pooled, label %spawn
pooled:
  call void @run_job(ptr @blas_task, ptr %set, i64 %n, i64 %n)
  br label %out
spawn:
  %jobs = alloca {{ ptr, i64 }}, i64 %n, align 8
  %tids = alloca i64, i64 %n, align 8
  %made = alloca i8, i64 %n, align 1
  br label %create
create:
  %i = phi i64 [ 1, %spawn ], [ %i1, %created ]
  %more = icmp ult i64 %i, %n
  br i1 %more, label %make, label %mine.run
make:
  %job = getelementptr inbounds {{ ptr, i64 }}, ptr %jobs, i64 %i
  store ptr %set, ptr %job, align 8
  %ji = getelementptr inbounds {{ ptr, i64 }}, ptr %job, i32 0, i32 1
  store i64 %i, ptr %ji, align 8
  %tid = getelementptr inbounds i64, ptr %tids, i64 %i
  %rc = call i32 @pthread_create(ptr %tid, ptr null, ptr @blas_thread, ptr %job)
  %ok = icmp eq i32 %rc, 0
  %flag = zext i1 %ok to i8
  %mp = getelementptr inbounds i8, ptr %made, i64 %i
  store i8 %flag, ptr %mp, align 1
  br label %created
created:
  %i1 = add i64 %i, 1
  br label %create
mine.run:
  call void @blas_task(ptr %set, i64 0, i64 1)
  br label %reap
reap:
  ; a job whose thread could not be made runs here, after the others: OpenBLAS's own pool
  ; would have had no thread for it either
  %k = phi i64 [ 1, %mine.run ], [ %k1, %reaped ]
  %left = icmp ult i64 %k, %n
  br i1 %left, label %join.one, label %out
join.one:
  %mk = getelementptr inbounds i8, ptr %made, i64 %k
  %m = load i8, ptr %mk, align 1
  %was = icmp ne i8 %m, 0
  br i1 %was, label %joined, label %inline
joined:
  %tk = getelementptr inbounds i64, ptr %tids, i64 %k
  %tv = load i64, ptr %tk, align 8
  %jr = call i32 @pthread_join(i64 %tv, ptr null)
  br label %reaped
inline:
  %k1i = add i64 %k, 1
  call void @blas_task(ptr %set, i64 %k, i64 %k1i)
  br label %reaped
reaped:
  %k1 = add i64 %k, 1
  br label %reap
out:
  %ul = call i32 @pthread_mutex_unlock(ptr @blas_mutex)
  ret void
}}

define i64 @ember_pool_start(i64 %workers) nounwind {{
entry:
  %tid = alloca i64, align 8
  %mi = call i32 @pthread_mutex_init(ptr @mutex, ptr null)
  %ci = call i32 @pthread_cond_init(ptr @cond, ptr null)
  %bi = call i32 @pthread_mutex_init(ptr @blas_mutex, ptr null)
  %me = call i32 @getpid()
  store atomic i32 %me, ptr @owner seq_cst, align 4
  store atomic i32 0, ptr @stop seq_cst, align 4
  store atomic i32 0, ptr @busy seq_cst, align 4
  store atomic i32 0, ptr @sleepers seq_cst, align 4
  store atomic i32 0, ptr @alive seq_cst, align 4
  store atomic i32 0, ptr @park seq_cst, align 4
  store atomic i64 {closed}, ptr @claim seq_cst, align 8
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %next ]
  %started = phi i64 [ 0, %entry ], [ %started1, %next ]
  %more = icmp ult i64 %i, %workers
  br i1 %more, label %create, label %out
create:
  %al = atomicrmw add ptr @alive, i32 1 seq_cst
  %rc = call i32 @pthread_create(ptr %tid, ptr null, ptr @worker, ptr null)
  %ok = icmp eq i32 %rc, 0
  br i1 %ok, label %detach, label %failed
detach:
  %id = load i64, ptr %tid, align 8
  %dr = call i32 @pthread_detach(i64 %id)
  br label %next
failed:
  %ar = atomicrmw sub ptr @alive, i32 1 seq_cst
  br label %next
next:
  %add = zext i1 %ok to i64
  %started1 = add i64 %started, %add
  %i1 = add i64 %i, 1
  br label %loop
out:
  ret i64 %started
}}

define void @ember_blas_first_thread(i32 %first) nounwind {{
entry:
  store atomic i32 %first, ptr @blas_first monotonic, align 4
  ret void
}}

define void @ember_pool_park() nounwind {{
entry:
  store atomic i32 1, ptr @park monotonic, align 4
  ret void
}}

define void @ember_pool_stop() nounwind {{
entry:
  store atomic i32 1, ptr @stop seq_cst, align 4
  %l = call i32 @pthread_mutex_lock(ptr @mutex)
  %b = call i32 @pthread_cond_broadcast(ptr @cond)
  %u = call i32 @pthread_mutex_unlock(ptr @mutex)
  br label %wait
wait:
  %n = load atomic i32, ptr @alive acquire, align 4
  %none = icmp eq i32 %n, 0
  br i1 %none, label %out, label %yield
yield:
  %y = call i32 @sched_yield()
  br label %wait
out:
  ret void
}}
"""
