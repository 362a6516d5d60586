package dev.kiln.junit;

import dev.kiln.KilnException;
import dev.kiln.Machine;
import dev.kiln.Snapshot;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;

/**
 * Starts the machines of one scope in parallel, one virtual thread each. When one fails the others are closed
 * (those still booting are stopped by closing them, which ends their ready wait) and the failure is thrown.
 */
final class VmStarter {
    private static final Executor VIRTUAL = task -> Thread.ofVirtual().name("kiln-vm").start(task);

    private VmStarter() {}

    /** Writes what a failed machine left behind and returns the directory. */
    interface EvidenceWriter {
        Path write(ManagedVm vm, Throwable failure);
    }

    /** Stands for "stopped because another machine of the batch failed": not a failure of its own. */
    private static final class Cancelled extends RuntimeException {
        Cancelled() {
            super(null, null, false, false);
        }
    }

    /** The machines of one start, and whether it was called off. */
    private static final class Batch {
        final List<ManagedVm> vms = new CopyOnWriteArrayList<>();
        volatile boolean cancelled;

        /** Calls the batch off and closes its machines: those still starting have their start called off. */
        void cancel() {
            cancelled = true;
            closeAll(List.copyOf(vms));
        }
    }

    /**
     * Starts every request; returns the machines in the requests' order, all ready. Every machine is added to
     * {@code scope} before it starts, so the scope closes it whatever happens.
     */
    static List<ManagedVm> startAll(List<VmRequest> requests, VmScope scope, VmTemplates templates, EvidenceWriter evidence) {
        if (requests.isEmpty()) return List.of();
        Batch batch = new Batch();
        List<CompletableFuture<ManagedVm>> futures = new ArrayList<>();
        for (VmRequest r : requests) {
            CompletableFuture<ManagedVm> f = new CompletableFuture<>();
            Thread.ofVirtual().name("kiln-start " + r.label()).start(() -> {
                try {
                    f.complete(startOne(r, scope, templates, batch, evidence));
                } catch (Throwable t) {
                    f.completeExceptionally(t);
                }
            });
            futures.add(f);
        }
        boolean interrupted = awaitAll(futures, batch);
        RuntimeException failure = null;
        for (CompletableFuture<ManagedVm> f : futures) {
            try {
                f.join();
            } catch (CompletionException e) {
                Throwable cause = e.getCause();
                if (cause instanceof Cancelled) continue;
                if (failure == null) failure = cause instanceof RuntimeException re ? re : new KilnException(cause.toString(), cause);
                else failure.addSuppressed(cause);
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
            if (failure == null) failure = new KilnException("interrupted while starting " + requests.stream().map(VmRequest::label).toList());
        }
        if (failure != null) {
            RuntimeException closing = closeAll(batch.vms);
            if (closing != null) failure.addSuppressed(closing);
            throw failure;
        }
        return futures.stream().map(CompletableFuture::join).toList();
    }

    /** Waits for every start; an interrupt calls the batch off, then the wait goes on (it is bounded). */
    private static boolean awaitAll(List<CompletableFuture<ManagedVm>> futures, Batch batch) {
        CompletableFuture<Void> all = CompletableFuture.allOf(futures.toArray(CompletableFuture[]::new));
        boolean interrupted = false;
        while (true) {
            try {
                all.get();
                return interrupted;
            } catch (ExecutionException e) {
                return interrupted; // every start has ended; the failures are read one by one
            } catch (InterruptedException e) {
                interrupted = true;
                batch.cancel();
            }
        }
    }

    private static ManagedVm startOne(VmRequest request, VmScope scope, VmTemplates templates, Batch batch, EvidenceWriter evidence) {
        if (batch.cancelled) throw new Cancelled();
        Machine machine;
        Snapshot template;
        try {
            template = request.vm().template() ? templates.forRequest(request).orElse(null) : null;
            if (batch.cancelled) throw new Cancelled();
            machine = request.create();
        } catch (RuntimeException e) {
            batch.cancel(); // a bad spec: stop the others at once
            throw e;
        }
        ManagedVm vm = new ManagedVm(request.label(), machine);
        scope.add(vm);
        batch.vms.add(vm);
        try {
            if (batch.cancelled) throw new Cancelled();
            vm.start(template);
            if (batch.cancelled) throw new Cancelled();
            return vm;
        } catch (Cancelled c) {
            throw c;
        } catch (RuntimeException e) {
            if (batch.cancelled) throw new Cancelled(); // closed by the batch because another machine failed
            Path dir = vm.spawned() ? writeEvidence(evidence, vm, e) : null;
            batch.cancel();
            vm.close();
            throw new KilnException(vm.label() + " (machine " + machine.id() + ") did not start: " + e.getMessage()
                    + (dir != null ? "\n  Kiln evidence: " + dir : ""), e);
        }
    }

    private static Path writeEvidence(EvidenceWriter evidence, ManagedVm vm, RuntimeException failure) {
        try {
            return evidence.write(vm, failure);
        } catch (RuntimeException e) {
            failure.addSuppressed(e);
            return null;
        }
    }

    /** Closes machines in parallel and waits for all of them; returns the first failure, if any. */
    static RuntimeException closeAll(List<ManagedVm> vms) {
        List<CompletableFuture<Void>> closing = vms.stream()
                .map(vm -> CompletableFuture.runAsync(vm::close, VIRTUAL)).toList();
        RuntimeException failure = null;
        for (CompletableFuture<Void> f : closing) {
            try {
                f.join(); // uninterruptible: a machine is never left half closed
            } catch (CompletionException e) {
                Throwable cause = e.getCause();
                if (failure == null) failure = cause instanceof RuntimeException re ? re : new KilnException(cause.toString(), cause);
                else failure.addSuppressed(cause);
            }
        }
        return failure;
    }
}
