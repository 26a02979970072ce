<#
.SYNOPSIS
    Export what vmsentry needs from ESXi/vCenter: standard and distributed switches, port groups with
    their security policy, and each VM's NICs and advanced settings, as one JSON document
    (schema "vmsentry.esxi-export/1"). Read-only: it only calls Get-* cmdlets.

.DESCRIPTION
    Needs VMware PowerCLI (Install-Module VMware.PowerCLI -Scope CurrentUser) and a read-only account.
    Secrets are never exported: advanced settings whose name contains "password", "secret" or "key"
    are written as "<set>" (vmsentry records presence only).

    Policy values: $true = Accept, $false = Reject, $null = inherited from the switch (port groups).
    vmsentry applies the defaults itself when a value is missing: standard vSwitch promiscuous Reject,
    MAC changes Accept, forged transmits Accept; distributed port groups Reject.

.EXAMPLE
    Connect-VIServer vcsa.example.org
    ./esxi-export.ps1 -OutFile esxi-export.json
    vmsentry scan esxi-export.json  /path/to/copied/*.vmx
#>
[CmdletBinding()]
param(
    [string]$OutFile = "esxi-export.json",
    [string[]]$VM = @()          # limit to these VM names (default: every VM)
)

$ErrorActionPreference = "Stop"
if (-not $global:DefaultVIServers -or $global:DefaultVIServers.Count -eq 0) {
    throw "Not connected: run Connect-VIServer SERVER first."
}

function Get-PolicyValues($policy, [bool]$portGroup) {
    if ($null -eq $policy) { return @{} }
    $out = @{}
    foreach ($name in "AllowPromiscuous", "MacChanges", "ForgedTransmits") {
        $value = $policy.$name
        if ($portGroup -and $policy.PSObject.Properties.Name -contains "${name}Inherited" -and $policy."${name}Inherited") {
            $value = $null        # inherited from the switch
        }
        $out[$name] = $value
    }
    return $out
}

$hosts = @(Get-VMHost | Sort-Object Name | ForEach-Object { $_.Name })

$switches = @()
foreach ($sw in Get-VirtualSwitch -Standard -ErrorAction SilentlyContinue) {
    $switches += [ordered]@{
        host        = $sw.VMHost.Name
        name        = $sw.Name
        distributed = $false
        nics        = @($sw.Nic)
        policy      = Get-PolicyValues (Get-SecurityPolicy -VirtualSwitch $sw) $false
    }
}
foreach ($vds in Get-VDSwitch -ErrorAction SilentlyContinue) {
    $switches += [ordered]@{
        host        = ""
        name        = $vds.Name
        distributed = $true
        nics        = @()
        policy      = @{}       # distributed switches keep the policy per port group
    }
}

$portgroups = @()
foreach ($pg in Get-VirtualPortGroup -Standard -ErrorAction SilentlyContinue) {
    $portgroups += [ordered]@{
        host        = $pg.VMHost.Name
        name        = $pg.Name
        vswitch     = $pg.VirtualSwitchName
        vlan        = $pg.VLanId
        distributed = $false
        policy      = Get-PolicyValues (Get-SecurityPolicy -VirtualPortGroup $pg) $true
    }
}
foreach ($dpg in Get-VDPortgroup -ErrorAction SilentlyContinue) {
    $sec = Get-VDSecurityPolicy -VDPortgroup $dpg
    $vlan = $null
    if ($dpg.VlanConfiguration) { $vlan = "$($dpg.VlanConfiguration)" -replace "^VLAN ", "" }
    $portgroups += [ordered]@{
        host        = ""
        name        = $dpg.Name
        key         = $dpg.Key
        vswitch     = $dpg.VDSwitch.Name
        vlan        = $vlan
        distributed = $true
        policy      = @{ AllowPromiscuous = $sec.AllowPromiscuous; MacChanges = $sec.MacChanges;
                         ForgedTransmits = $sec.ForgedTransmits }
    }
}

$vms = @()
$vmList = if ($VM.Count) { Get-VM -Name $VM } else { Get-VM }
foreach ($v in ($vmList | Sort-Object Name)) {
    $advanced = [ordered]@{}
    foreach ($setting in Get-AdvancedSetting -Entity $v) {
        $value = "$($setting.Value)"
        if ($setting.Name -match "password|passwd|secret|key") { $value = "<set>" }
        $advanced[$setting.Name] = $value
    }
    $nics = @()
    foreach ($a in Get-NetworkAdapter -VM $v) {
        $distributed = $false
        $network = $a.NetworkName
        if ($a.ExtensionData.Backing -is [VMware.Vim.VirtualEthernetCardDistributedVirtualPortBackingInfo]) {
            $distributed = $true
            $network = $a.ExtensionData.Backing.Port.PortgroupKey
        }
        $nics += [ordered]@{
            name            = $a.Name
            mac             = $a.MacAddress
            network         = $network
            distributed     = $distributed
            type            = "$($a.Type)"
            connected       = $a.ConnectionState.Connected
            start_connected = $a.ConnectionState.StartConnected
        }
    }
    $cfg = $v.ExtensionData.Config
    $vms += [ordered]@{
        name               = $v.Name
        host               = $v.VMHost.Name
        uuid               = $cfg.Uuid
        instance_uuid      = $cfg.InstanceUuid
        vmx_path           = $cfg.Files.VmPathName
        migrate_encryption = "$($cfg.MigrateEncryption)"
        ft_encryption      = "$($cfg.FtEncryptionMode)"
        nics               = $nics
        advanced           = $advanced
    }
}

$doc = [ordered]@{
    schema     = "vmsentry.esxi-export/1"
    exported   = (Get-Date).ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ")
    server     = ($global:DefaultVIServers | ForEach-Object { $_.Name }) -join ","
    hosts      = $hosts
    switches   = $switches
    portgroups = $portgroups
    vms        = $vms
}
$doc | ConvertTo-Json -Depth 8 | Set-Content -Path $OutFile -Encoding UTF8
Write-Host "wrote $OutFile: $($hosts.Count) hosts, $($portgroups.Count) port groups, $($vms.Count) VMs"
