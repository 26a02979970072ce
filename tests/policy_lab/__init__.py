"""The namespace lab for the segmentation-policy tests: a hypervisor namespace that owns the VM bridge and
routes to an office segment, VMs and people in their own namespaces, and in-process servers/clients."""
