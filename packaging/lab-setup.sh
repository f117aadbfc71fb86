# lab-summary: issue 4: `nfsha setup --root` migrates the seed's fstab mounts (VIP); the agent then mounts and recovers through a failover; undo restores fstab
# lab-timeout: 200
# Run: lab/run.sh --out DIR packaging/lab-setup.sh   (any scenario file runs by path)
# client-1 gets a root directory with the seed's Phase-1 fstab (soft NFS lines to the VIP,
# mountpoints /airflow/dags and /airflow/logs). `nfsha setup --root` imports it (the guest has
# no systemd: starting the agent by hand is the non-systemd equivalent of `--enable`), the
# operator step of MIGRATING.md is applied (soft -> hard), the agent runs with the config
# setup wrote, accesses go on through a failover, then `--undo` must restore fstab exactly.
# Env: LAB_DEB — a .deb inside the guest (`lab/run.sh --deb FILE` puts one in the 9p share):
# installed with `dpkg -i`, and its /usr/bin/nfsha used instead of the share's binary.
c=client-1
[ -n "${LAB_OUT:-}" ] || { echo "run this file with lab/run.sh" >&2; exit 2; }
lab_setup replica 1
R=/var/lab/$c/root
rm -rf "$R"
mkdir -p "$R/etc" "$R/sbin"
{
    echo "# /etc/fstab of an Airflow VM before the migration (seed 000, Step 1.2)"
    echo "UUID=0a1b2c3d-1111-2222-3333-444455556666 / ext4 errors=remount-ro 0 1"
    for m in dags logs; do
        echo "$LAB_VIP:/srv/airflow/$m /airflow/$m nfs soft,timeo=10,retrans=3,intr,bg,_netdev,rsize=8192,wsize=8192,vers=4.1 0 0"
    done
} >"$R/etc/fstab"
before=$(sha256sum <"$R/etc/fstab")
# setup looks for mount.nfs inside the root it acts on.
ln -sf "$(command -v mount.nfs || echo /sbin/mount.nfs)" "$R/sbin/mount.nfs"
bin=$NFSHA
if [ -n "${LAB_DEB:-}" ]; then
    # Install the package on the guest for real (the guest is a fresh bookworm system).
    dpkg -i "$LAB_DEB" >"$LAB_OUT/dpkg-install.txt" 2>&1
    rc=$?
    bin=/usr/bin/nfsha
    lab_check deb-installed "$([ $rc = 0 ] && [ -x "$bin" ] && echo 1 || echo 0)" "dpkg -i exit $rc: $(tail -1 "$LAB_OUT/dpkg-install.txt")"
    lab_check deb-ships-unit "$([ -f /lib/systemd/system/nfsha-agent.service ] || [ -f /usr/lib/systemd/system/nfsha-agent.service ] && echo 1 || echo 0)"
fi
out=$("$bin" setup --root "$R" --service airflow-scheduler.service 2>&1)
rc=$?
echo "$out" >"$LAB_OUT/setup-output.txt"
lab_check setup-ok "$([ $rc = 0 ] && echo 1 || echo 0)" "exit $rc"
lab_check setup-commented-fstab "$([ "$(grep -c '^#nfsha-setup# ' "$R/etc/fstab")" = 2 ] && echo 1 || echo 0)"
lab_check setup-wrote-unit "$([ -f "$R/etc/systemd/system/nfsha-agent.service" ] && echo 1 || echo 0)"
out2=$("$bin" setup --root "$R" 2>&1)
lab_check setup-second-run-noop "$(grep -q 'nothing to change' <<<"$out2" && echo 1 || echo 0)" "$out2"
cfg=$R/etc/nfsha/nfsha.toml
cp "$cfg" "$LAB_OUT/nfsha.toml.imported"
# MIGRATING.md step 3 (review): soft -> hard. Lab conventions: events where the report finds
# them, no HTTP listener.
sed -i -e 's/"soft"/"hard"/' -e 's/^listen = .*/listen = "off"/' \
    -e "/^\[agent\]/a event_log = \"$LAB_OUT/events-$c.jsonl\"" "$cfg"
lab_check config-check "$("$bin" config check --config "$cfg" >/dev/null 2>&1 && echo 1 || echo 0)"
# On a real fstab host the mountpoints exist already (fstab needed them).
lab_on "$c" mkdir -p /airflow/dags /airflow/logs
NFSHA=$bin lab_agent_start "$c" "$cfg" >/dev/null
lab_wait_mounted "$c" /airflow/dags 30
lab_check agent-mounted-dags "$([ $? = 0 ] && echo 1 || echo 0)"
lab_wait_mounted "$c" /airflow/logs 10
lab_check agent-mounted-logs "$([ $? = 0 ] && echo 1 || echo 0)"
p=$(lab_access "$c" nfsha --path /airflow/dags --path /airflow/logs --interval 100ms --duration 40s --op ls)
sleep 8
lab_failover
lab_access_wait "$p"
lab_agent_stop "$c"
lab_report
for m in dags logs; do
    lab_figure "nfsha_${m}_error_window_s" "$(lab_ms_to_s "$(lab_q nfsha /airflow/$m .error_window_ms)")" s
    lab_check "recovered-$m" "$(lab_q nfsha /airflow/$m .recovered)" "/airflow/$m"
done
out3=$("$bin" setup --root "$R" --undo 2>&1)
lab_check undo-ok "$([ $? = 0 ] && echo 1 || echo 0)" "$out3"
lab_check undo-restores-fstab "$([ "$(sha256sum <"$R/etc/fstab")" = "$before" ] && echo 1 || echo 0)"
lab_check undo-removed-unit "$([ ! -e "$R/etc/systemd/system/nfsha-agent.service" ] && echo 1 || echo 0)"
