package dev.kiln.firecracker.api;

import com.atlassian.oai.validator.OpenApiInteractionValidator;
import dev.kiln.firecracker.MicrovmSetup;
import dev.kiln.firecracker.api.model.CpuTemplate;
import dev.kiln.firecracker.api.model.Drive;
import dev.kiln.firecracker.api.model.RateLimiter;
import dev.kiln.firecracker.api.model.TokenBucket;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** The configuration shortcuts send requests the spec accepts, in the order Firecracker needs them, with mapped paths. */
class MicrovmSetupContractTest {
    @Test
    void everyShortcutSendsValidRequests() {
        RecordingTransport transport = RecordingTransport.noContent();
        List<String> mapped = new ArrayList<>();
        MicrovmSetup setup = new MicrovmSetup(new FirecrackerApi(transport), (file, writable) -> {
            mapped.add(file.getFileName() + (writable ? " rw" : " ro"));
            return "/" + file.getFileName();
        });
        RateLimiter limiter = new RateLimiter(TokenBucket.of(1000, 100), null);
        setup.basicConfig(MicrovmSetup.BasicConfig.of(Path.of("/img/vmlinux"), "console=ttyS0 reboot=k panic=1")
                .withSize(2, 256).withSmt(false).withTrackDirtyPages(true).withCpuTemplate(CpuTemplate.T2)
                .withInitrd(Path.of("/img/initrd.cpio")).withRootfs(Path.of("/img/rootfs.ext4"), false, Drive.IoEngine.Async));
        setup.addDrive(Drive.of("scratch", null, false, true).withPartuuid("abcd-01").withCacheType(Drive.CacheType.Writeback)
                .withRateLimiter(limiter), Path.of("/img/scratch.ext4"));
        setup.patchDrive("scratch", Path.of("/img/other.ext4"), limiter);
        setup.addNetworkInterface("eth0", "tap0", "06:00:C0:A8:00:02", limiter, limiter);
        setup.addVsock(3, "/v.sock");
        setup.pauseToSnapshot("/snap/mem", "/snap/vmstate", true);
        setup.restoreFromSnapshot(Path.of("/snap/mem"), Path.of("/snap/vmstate"), List.of(Path.of("/img/rootfs.ext4")), true);

        assertThat(transport.sent()).extracting(s -> s.method() + " " + s.path()).containsExactly(
                "PUT /machine-config", "PUT /boot-source", "PUT /drives/rootfs", "PUT /drives/scratch", "PATCH /drives/scratch",
                "PUT /network-interfaces/eth0", "PUT /vsock", "PATCH /vm", "PUT /snapshot/create", "PUT /snapshot/load");
        assertThat(mapped).containsExactly("vmlinux ro", "initrd.cpio ro", "rootfs.ext4 rw", "scratch.ext4 ro", "other.ext4 rw",
                "mem ro", "vmstate ro", "rootfs.ext4 rw");
        OpenApiInteractionValidator validator = OpenApiInteractionValidator.createForInlineApiSpecification(Spec.get().text()).build();
        for (RecordingTransport.Sent s : transport.sent()) {
            assertThat(validator.validateRequest(ApiContractTest.request(s)).getMessages()).as("%s", s).isEmpty();
        }
        assertThat(transport.sent().get(8).body()).contains("\"snapshot_type\":\"Diff\"");
        assertThat(transport.sent().get(9).body()).contains("\"resume_vm\":true", "\"backend_type\":\"File\"", "\"track_dirty_pages\":true");
    }
}
