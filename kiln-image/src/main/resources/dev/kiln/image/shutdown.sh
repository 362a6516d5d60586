#!/bin/sh
# qemu-ga's guest-shutdown runs `shutdown -P|-H|-r +0 "message"`. There is no init system to ask: sync and act
# now. Halt powers off too, since a halted VM would only sit there until killed.
action=poweroff
for a; do [ "$a" = -r ] && action=reboot; done
sync
exec $action -f
