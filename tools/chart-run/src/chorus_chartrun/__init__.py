"""The Helm chart, run: every workload it renders as local processes, as a strict kubelet would.

``make chart-run`` and the chart's tests render ``deploy/helm/chorus`` with Helm's own engine
and run what it gives: pods with their own network namespace and address, Service names
resolving to them, volumes at the chart's mount paths, the environment built from the
chart's ConfigMaps and Secrets, probes, restarts and graceful stops, nginx configured from
the rendered Ingress (or HTTPRoute). Nothing between the manifest and the process is
rewritten. Kept light: :mod:`chorus_chartrun.container` starts once per container.
"""
