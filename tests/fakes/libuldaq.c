/* A fake of MCC's Universal Library for Linux (libuldaq.so), below tomato-mcc and uldaq.
 *
 * uldaq (PyPI) loads libuldaq.so with ctypes and looks up every function it wraps when it
 * is imported; tomato-mcc then finds USB devices, connects one, sets a channel's
 * thermocouple type and reads temperatures. This library simulates FAKE_ULDAQ_DEVICES
 * (default 1) USB-TC boxes of 8 channels each. Every thermocouple starts as type T; a
 * channel reads 20 degC + its number + 0.5 degC per thermocouple-type code (so a test sees
 * which type the driver set). A channel outside 0..7 is BAD_AI_CHAN (14). Functions
 * tomato-mcc never calls answer UNHANDLED_EXCEPTION (1).
 *
 * Build: gcc -shared -fPIC -Wl,-soname,libuldaq.so -o libuldaq.so libuldaq.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char product_name[64];
    unsigned int product_id;
    unsigned int dev_interface;
    char dev_string[64];
    char unique_id[64];
    char reserved[512];
} DaqDeviceDescriptor;

enum { USB_IFC = 1, HAS_AI_DEV = 1, CHAN_TC_TYPE = 2, TC_T = 3, CHANNELS = 8, MAX_DEV = 16 };
enum { ERR_UNHANDLED = 1, ERR_BAD_DEV_HANDLE = 2, ERR_BAD_AI_CHAN = 14, ERR_NOT_SUPPORTED = 24 };

static long long tc_type[MAX_DEV][CHANNELS];
static int connected[MAX_DEV], configured[MAX_DEV];

static int device_count(void) {
    const char *env = getenv("FAKE_ULDAQ_DEVICES");
    int n = env ? atoi(env) : 1;
    return n < 0 ? 0 : (n > MAX_DEV ? MAX_DEV : n);
}

static int valid(long long handle) { return handle >= 1 && handle <= device_count(); }

static void describe(int i, DaqDeviceDescriptor *d) {
    memset(d, 0, sizeof *d);
    snprintf(d->product_name, sizeof d->product_name, "USB-TC");
    d->product_id = 0x90;
    d->dev_interface = USB_IFC;
    snprintf(d->dev_string, sizeof d->dev_string, "USB-TC (fake %d)", i);
    snprintf(d->unique_id, sizeof d->unique_id, "FAKE%04d", i);
}

int ulGetDaqDeviceInventory(unsigned int ifc, DaqDeviceDescriptor *out, unsigned int *n) {
    unsigned int found = (ifc & USB_IFC) ? (unsigned int)device_count() : 0;
    unsigned int i;
    for (i = 0; i < found && i < *n; i++) describe((int)i, &out[i]);
    *n = found;
    return 0;
}

long long ulCreateDaqDevice(DaqDeviceDescriptor d) {
    int i = atoi(d.unique_id + 4);
    if (strncmp(d.unique_id, "FAKE", 4) != 0 || i < 0 || i >= device_count()) return 0;
    if (!configured[i]) { /* a box keeps its settings across handles, as the real one does */
        for (int ch = 0; ch < CHANNELS; ch++) tc_type[i][ch] = TC_T;
        configured[i] = 1;
    }
    return i + 1;
}

int ulGetDaqDeviceDescriptor(long long h, DaqDeviceDescriptor *d) {
    if (!valid(h)) return ERR_BAD_DEV_HANDLE;
    describe((int)h - 1, d);
    return 0;
}

int ulDevGetInfo(long long h, unsigned int item, unsigned int index, long long *value) {
    if (!valid(h)) return ERR_BAD_DEV_HANDLE;
    *value = item == HAS_AI_DEV;
    return 0;
}

int ulConnectDaqDevice(long long h) {
    if (!valid(h)) return ERR_BAD_DEV_HANDLE;
    connected[h - 1] = 1;
    return 0;
}

int ulDisconnectDaqDevice(long long h) {
    if (!valid(h)) return ERR_BAD_DEV_HANDLE;
    connected[h - 1] = 0;
    return 0;
}

int ulReleaseDaqDevice(long long h) { return valid(h) ? 0 : ERR_BAD_DEV_HANDLE; }

int ulIsDaqDeviceConnected(long long h, int *yes) {
    if (!valid(h)) return ERR_BAD_DEV_HANDLE;
    *yes = connected[h - 1];
    return 0;
}

int ulAIGetConfig(long long h, unsigned int item, unsigned int ch, long long *value) {
    if (!valid(h)) return ERR_BAD_DEV_HANDLE;
    if (item != CHAN_TC_TYPE) return ERR_NOT_SUPPORTED;
    if (ch >= CHANNELS) return ERR_BAD_AI_CHAN;
    *value = tc_type[h - 1][ch];
    return 0;
}

int ulAISetConfig(long long h, unsigned int item, unsigned int ch, long long value) {
    if (!valid(h)) return ERR_BAD_DEV_HANDLE;
    if (item != CHAN_TC_TYPE) return ERR_NOT_SUPPORTED;
    if (ch >= CHANNELS) return ERR_BAD_AI_CHAN;
    tc_type[h - 1][ch] = value;
    return 0;
}

int ulTIn(long long h, int ch, unsigned int scale, unsigned int flags, double *value) {
    if (!valid(h)) return ERR_BAD_DEV_HANDLE;
    if (ch < 0 || ch >= CHANNELS) return ERR_BAD_AI_CHAN;
    *value = 20.0 + ch + 0.5 * (double)tc_type[h - 1][ch];
    return 0;
}

int ulGetErrMsg(unsigned int code, char *msg) {
    const char *text = code == ERR_BAD_DEV_HANDLE ? "Invalid device handle"
                       : code == ERR_BAD_AI_CHAN  ? "Invalid analog input channel specified"
                       : code == ERR_NOT_SUPPORTED ? "Configuration not supported"
                                                   : "Unhandled internal exception";
    snprintf(msg, 1000, "%s", text);
    return 0;
}

#define STUB(name) \
    int name(void) { return ERR_UNHANDLED; }
STUB(ulAIGetConfigDbl) STUB(ulAIGetConfigStr) STUB(ulAIGetInfo) STUB(ulAIGetInfoDbl)
STUB(ulAISetConfigDbl) STUB(ulAIn) STUB(ulAInLoadQueue) STUB(ulAInScan)
STUB(ulAInScanStatus) STUB(ulAInScanStop) STUB(ulAInScanWait) STUB(ulAInSetTrigger)
STUB(ulAOGetConfig) STUB(ulAOGetInfo) STUB(ulAOGetInfoDbl) STUB(ulAOSetConfig) STUB(ulAOut)
STUB(ulAOutArray) STUB(ulAOutScan) STUB(ulAOutScanStatus) STUB(ulAOutScanStop)
STUB(ulAOutScanWait) STUB(ulAOutSetTrigger) STUB(ulCClear) STUB(ulCConfigScan) STUB(ulCIn)
STUB(ulCInScan) STUB(ulCInScanStatus) STUB(ulCInScanStop) STUB(ulCInScanWait)
STUB(ulCInSetTrigger) STUB(ulCLoad) STUB(ulCRead) STUB(ulCtrGetConfig) STUB(ulCtrGetInfo)
STUB(ulCtrGetInfoDbl) STUB(ulCtrSetConfig) STUB(ulDBitIn) STUB(ulDBitOut)
STUB(ulDClearAlarm) STUB(ulDConfigBit) STUB(ulDConfigPort) STUB(ulDIOGetConfig)
STUB(ulDIOGetInfo) STUB(ulDIOGetInfoDbl) STUB(ulDIOSetConfig) STUB(ulDIn) STUB(ulDInArray)
STUB(ulDInScan) STUB(ulDInScanStatus) STUB(ulDInScanStop) STUB(ulDInScanWait)
STUB(ulDInSetTrigger) STUB(ulDOut) STUB(ulDOutArray) STUB(ulDOutScan) STUB(ulDOutScanStatus)
STUB(ulDOutScanStop) STUB(ulDOutScanWait) STUB(ulDOutSetTrigger)
STUB(ulDaqDeviceConnectionCode) STUB(ulDaqIGetInfo) STUB(ulDaqIGetInfoDbl) STUB(ulDaqInScan)
STUB(ulDaqInScanStatus) STUB(ulDaqInScanStop) STUB(ulDaqInScanWait) STUB(ulDaqInSetTrigger)
STUB(ulDaqOGetInfo) STUB(ulDaqOGetInfoDbl) STUB(ulDaqOutScan) STUB(ulDaqOutScanStatus)
STUB(ulDaqOutScanStop) STUB(ulDaqOutScanWait) STUB(ulDaqOutSetTrigger) STUB(ulDevGetConfig)
STUB(ulDevGetConfigStr) STUB(ulDevSetConfig) STUB(ulDisableEvent) STUB(ulEnableEvent)
STUB(ulFlashLed) STUB(ulGetConfig) STUB(ulGetInfoStr) STUB(ulGetNetDaqDeviceDescriptor)
STUB(ulMemGetInfo) STUB(ulMemRead) STUB(ulMemWrite) STUB(ulSetConfig) STUB(ulTInArray)
STUB(ulTmrGetInfo) STUB(ulTmrGetInfoDbl) STUB(ulTmrPulseOutStart) STUB(ulTmrPulseOutStatus)
STUB(ulTmrPulseOutStop) STUB(ulTmrSetTrigger)
