package dev.kiln.junit;

import dev.kiln.qemu.QemuMachine;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.RepeatedTest;
import org.junit.jupiter.api.extension.ExtendWith;

import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code @Vm(template = true)}: one boot for the class, and each test a clone of its own. */
@ExtendWith(LeakCheck.class) // before @KilnTest: its afterAll runs after Kiln's has removed the template
@KilnTest
class VmTemplateTest {
    private static final Set<String> templates = ConcurrentHashMap.newKeySet();
    private static final List<String> ids = new CopyOnWriteArrayList<>();

    @Vm(template = true)
    QemuMachine vm;

    @RepeatedTest(3)
    void eachTestGetsItsOwnCloneOfOneTemplate() {
        String startedBy = vm.transitions().getFirst().reason();
        assertThat(startedBy).startsWith("startFrom(snapshot in ");
        templates.add(startedBy);
        ids.add(vm.id());
        // What an earlier test wrote is in its clone only.
        assertThat(vm.guest().exec("test", "-e", "/tmp/written-by-a-test").exitCode()).isNotZero();
        vm.guest().succeed("touch /tmp/written-by-a-test");
        assertThat(vm.guest().succeed("hostname").strip()).isEqualTo(vm.id());
    }

    @AfterAll
    static void oneTemplateServedEveryTest() {
        assertThat(templates).hasSize(1);
        assertThat(ids).hasSize(3).doesNotHaveDuplicates();
    }
}
