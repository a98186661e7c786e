# The boots of the power-cut tests (sourced by tests/vm/powercut.sh and tests/vm/fetchcut.sh,
# which set kernel, out, cuts and drives (qemu's -drive arguments) and build $out/initrd.img).
# The initramfs /init prints "PRISTINE-CUT: run 1 start", "... run 1 exit code N" (finishing
# and checking what the previous boot left), then, unless `nocut` is on the kernel command
# line, "... run 2 start" and "... run 2 exit code N": the run the host cuts.
#
# Prints per boot "CHECK n log=FILE first_ms=MS" and "CUT n delay=MS interrupted=yes|no
# last=LINE"; logs are $out/bootN.log.

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# boot_once N APPEND [DELAY_MS]: boots once; first_ms and second_ms are how long the two
# pristine runs took (0: not seen). With a delay, qemu is killed that long after the second
# run starts.
boot_once() {
  local n=$1 append=$2 delay=${3:-} log=$out/boot$1.log t0=0 t1=0 t2=0 t3=0
  qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -no-reboot \
    -kernel "$kernel" -initrd "$out/initrd.img" \
    "${drives[@]}" -device virtio-rng-pci \
    -append "console=ttyS0 panic=-1 loglevel=4 no_timer_check $append" > "$log" 2>&1 &
  local pid=$! start=$(now_ms) deadline=$(( $(now_ms) + ${PRISTINE_VM_TIMEOUT:-300} * 1000 ))
  while kill -0 $pid 2>/dev/null; do
    if (( $(now_ms) > deadline )); then echo "TIMEOUT $n"; kill -9 $pid; break; fi
    if (( t0 == 0 )) && grep -aq "PRISTINE-CUT: run 1 start" "$log"; then t0=$(now_ms); fi
    if (( t1 == 0 )) && grep -aq "PRISTINE-CUT: run 1 exit code" "$log"; then t1=$(now_ms); fi
    if (( t2 == 0 )) && grep -aq "PRISTINE-CUT: run 2 start" "$log"; then t2=$(now_ms); fi
    if (( t3 == 0 )) && grep -aq "PRISTINE-CUT: run 2 exit code" "$log"; then t3=$(now_ms); fi
    if [[ -n $delay ]] && grep -aq "PRISTINE-CUT: run 2 start" "$log"; then
      sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
      kill -9 $pid 2>/dev/null || true
      break
    fi
    sleep 0.02
  done
  wait $pid 2>/dev/null || true
  first_ms=$(( t1 > t0 ? t1 - t0 : 0 )) second_ms=$(( t3 > t2 ? t3 - t2 : 0 ))
  boot_ms=$(( $(now_ms) - start ))
}
# boot: boot_once, again (twice at most) when the kernel did not get as far as the initramfs
# (an emulated machine under heavy load can fail its timer checks): that is no power cut.
boot() {
  local try
  for try in 1 2 3; do
    boot_once "$@"
    grep -aq "PRISTINE-CUT: run 1 start" "$out/boot$1.log" && return 0
    echo "RETRY $1 (the kernel did not reach the initramfs: $(grep -a -m1 -E 'panic|Kernel' "$out/boot$1.log" | tr -cd '[:print:]' | cut -c1-100))"
  done
}

# Boot 0 runs both resets uncut: the second one's length is the span cut points are drawn
# from. Then every boot finishes and checks what the previous cut left, arms a new reset and
# is cut while pristine runs, until CUTS cuts interrupted pristine (at most 2*CUTS tries); a
# last boot only checks. A cut that came too late (pristine had finished) shortens the span.
boot 0 ""
span=$(( second_ms > 100 ? second_ms : 1500 ))
echo "CHECK 0 log=$out/boot0.log first_ms=$first_ms boot_ms=$boot_ms"
echo "CALIBRATED second_ms=$second_ms span=$span"
n=1 interrupted_cuts=0
while (( interrupted_cuts < cuts && n <= 2 * cuts )); do
  delay=$(( (RANDOM * 32768 + RANDOM) % span ))
  boot $n "" $delay
  if grep -aq "PRISTINE-CUT: run 2 exit code" "$out/boot$n.log"; then
    interrupted=no span=$(( delay > 100 ? delay : 100 ))
  elif ! grep -aq "PRISTINE-CUT: run 2 start" "$out/boot$n.log"; then
    interrupted=no
  else
    interrupted=yes interrupted_cuts=$((interrupted_cuts + 1))
  fi
  last=$(grep -a -v '^\s*$' "$out/boot$n.log" | tail -n1 | tr -cd '[:print:]' | cut -c1-120)
  echo "CHECK $n log=$out/boot$n.log first_ms=$first_ms boot_ms=$boot_ms"
  echo "CUT $n delay=$delay interrupted=$interrupted last=$last"
  n=$((n + 1))
done
boot $n nocut
echo "CHECK $n log=$out/boot$n.log first_ms=$first_ms boot_ms=$boot_ms"
