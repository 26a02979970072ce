<#
.SYNOPSIS
    Read-only export of a Hyper-V host's VM networking and isolation settings for vmsentry.

.DESCRIPTION
    Runs only Get-* cmdlets of the Hyper-V module and writes one JSON document that
    `vmsentry scan FILE` reads (collect/hyperv.py). Property names are the cmdlets' own; enum values are
    written by name ("Off", "External") so the file does not depend on the PowerShell version.
    Nothing is changed on the host; no credential or secret is read.

.EXAMPLE
    # elevated PowerShell on the Hyper-V host (Windows PowerShell 5.1 or PowerShell 7)
    .\hyperv-export.ps1 -Path C:\temp\hv1.hyperv.json
    # then, anywhere: vmsentry scan hv1.hyperv.json
#>
[CmdletBinding()]
param(
    [string]$Path = ".\$($env:COMPUTERNAME).hyperv.json",
    [string[]]$VMName = @('*')
)
$ErrorActionPreference = 'Stop'
Import-Module Hyper-V

function S($value) { if ($null -eq $value) { $null } else { "$value" } }   # enum -> its name

function Try-Get([scriptblock]$block) {
    try { & $block } catch { Write-Warning "vmsentry export: $($_.Exception.Message)"; $null }
}

$vmHost = Get-VMHost
$hostDoc = [ordered]@{
    ComputerName                              = $vmHost.ComputerName
    EnableEnhancedSessionMode                 = [bool]$vmHost.EnableEnhancedSessionMode
    VirtualMachineMigrationEnabled            = [bool]$vmHost.VirtualMachineMigrationEnabled
    VirtualMachineMigrationAuthenticationType = S $vmHost.VirtualMachineMigrationAuthenticationType
    VirtualMachineMigrationPerformanceOption  = S $vmHost.VirtualMachineMigrationPerformanceOption
    UseAnyNetworkForMigration                 = [bool]$vmHost.UseAnyNetworkForMigration
    MaximumVirtualMachineMigrations           = $vmHost.MaximumVirtualMachineMigrations
}

$switches = @(Get-VMSwitch | ForEach-Object {
    $sw = $_
    [ordered]@{
        Name                           = $sw.Name
        Id                             = S $sw.Id
        SwitchType                     = S $sw.SwitchType
        AllowManagementOS              = [bool]$sw.AllowManagementOS
        NetAdapterInterfaceDescription = $sw.NetAdapterInterfaceDescription
        Extensions                     = @(Try-Get { Get-VMSwitchExtension -VMSwitchName $sw.Name } | ForEach-Object {
            [ordered]@{ Name = $_.Name; Enabled = [bool]$_.Enabled; ExtensionType = S $_.ExtensionType; Vendor = $_.Vendor }
        })
    }
})

$vms = @(Get-VM -Name $VMName | ForEach-Object {
    $vm = $_
    $adapters = @(Get-VMNetworkAdapter -VM $vm | ForEach-Object {
        $a = $_
        $vlan = Try-Get { Get-VMNetworkAdapterVlan -VMNetworkAdapter $a }
        [ordered]@{
            Name               = $a.Name
            MacAddress         = $a.MacAddress
            SwitchName         = $a.SwitchName
            Connected          = [bool]$a.Connected
            IPAddresses        = @($a.IPAddresses)
            MacAddressSpoofing = S $a.MacAddressSpoofing
            DhcpGuard          = S $a.DhcpGuard
            RouterGuard        = S $a.RouterGuard
            PortMirroringMode  = S $a.PortMirroringMode
            IeeePriorityTag    = S $a.IeeePriorityTag
            AllowTeaming       = S $a.AllowTeaming
            Vlan               = if ($vlan) { [ordered]@{
                                     OperationMode     = S $vlan.OperationMode
                                     AccessVlanId      = $vlan.AccessVlanId
                                     NativeVlanId      = $vlan.NativeVlanId
                                     AllowedVlanIdList = S $vlan.AllowedVlanIdList } } else { $null }
            Acls               = @(Try-Get { Get-VMNetworkAdapterAcl -VMNetworkAdapter $a } | ForEach-Object {
                                     [ordered]@{ Action = S $_.Action; Direction = S $_.Direction
                                                 LocalAddress = S $_.LocalAddress; RemoteAddress = S $_.RemoteAddress } })
            ExtendedAcls       = @(Try-Get { Get-VMNetworkAdapterExtendedAcl -VMNetworkAdapter $a } | ForEach-Object {
                                     [ordered]@{ Action = S $_.Action; Direction = S $_.Direction
                                                 LocalIPAddress = $_.LocalIPAddress; RemoteIPAddress = $_.RemoteIPAddress
                                                 LocalPort = $_.LocalPort; RemotePort = $_.RemotePort
                                                 Protocol = $_.Protocol; Weight = $_.Weight; Stateful = [bool]$_.Stateful } })
        }
    })
    $security = Try-Get { Get-VMSecurity -VM $vm }
    $firmware = if ($vm.Generation -eq 2) { Try-Get { Get-VMFirmware -VM $vm } } else { $null }
    [ordered]@{
        Name                = $vm.Name
        Id                  = S $vm.Id
        State               = S $vm.State
        Generation          = $vm.Generation
        Version             = $vm.Version
        CheckpointType      = S $vm.CheckpointType
        AutomaticStopAction = S $vm.AutomaticStopAction
        NetworkAdapters     = $adapters
        IntegrationServices = @(Get-VMIntegrationService -VM $vm | ForEach-Object { [ordered]@{ Name = $_.Name; Enabled = [bool]$_.Enabled } })
        Snapshots           = @(Get-VMSnapshot -VM $vm | ForEach-Object {
                                  [ordered]@{ Name = $_.Name; CreationTime = $_.CreationTime.ToUniversalTime().ToString('o')
                                              SnapshotType = S $_.SnapshotType } })
        Security            = if ($security) { [ordered]@{
                                  TpmEnabled = [bool]$security.TpmEnabled; KsdEnabled = [bool]$security.KsdEnabled
                                  Shielded = [bool]$security.Shielded
                                  EncryptStateAndVmMigrationTraffic = [bool]$security.EncryptStateAndVmMigrationTraffic } } else { $null }
        Firmware            = if ($firmware) { [ordered]@{ SecureBoot = S $firmware.SecureBoot; SecureBootTemplate = $firmware.SecureBootTemplate } } else { $null }
        AssignableDevices   = @(Try-Get { Get-VMAssignableDevice -VM $vm } | ForEach-Object { [ordered]@{ InstanceID = $_.InstanceID; LocationPath = $_.LocationPath } })
        ComPorts            = @(Get-VMComPort -VM $vm | ForEach-Object { [ordered]@{ Name = $_.Name; Path = $_.Path } })
    }
})

$doc = [ordered]@{
    schema    = 'vmsentry.hyperv-export/1'
    generated = (Get-Date).ToUniversalTime().ToString('o')
    host      = $hostDoc
    switches  = $switches
    vms       = $vms
}
$doc | ConvertTo-Json -Depth 8 | Set-Content -Path $Path -Encoding UTF8
Write-Host "vmsentry: wrote $Path ($($vms.Count) VMs, $($switches.Count) switches)"
