// SPDX-License-Identifier: GPL-2.0
/*
 * edu_poll: computes a factorial on QEMU's edu device at probe time, by
 * polling its status register (no interrupts), and says the result in the
 * kernel log.  Written without kdk in mind (kdk's tests use it as a
 * "driver from elsewhere"): unmanaged resources, cleaned up by hand.
 *
 *   insmod edu_poll.ko n=10   ->   edu_poll: 10! = 3628800
 */
#include <linux/delay.h>
#include <linux/module.h>
#include <linux/pci.h>

#define EDU_ID_REG	0x00
#define EDU_FACT_REG	0x08
#define EDU_STATUS_REG	0x20
#define EDU_BUSY	0x01

static unsigned int n = 10;
module_param(n, uint, 0444);
MODULE_PARM_DESC(n, "the number whose factorial the device computes");

static void __iomem *mmio;

static int edu_poll_probe(struct pci_dev *dev, const struct pci_device_id *id)
{
	int err, tries;
	u32 result;

	err = pci_enable_device(dev);
	if (err)
		return err;
	err = pci_request_region(dev, 0, "edu_poll");
	if (err)
		goto disable;
	mmio = pci_iomap(dev, 0, 0);
	if (!mmio) {
		err = -ENOMEM;
		goto release;
	}

	pr_info("edu_poll: device id %#010x\n", readl(mmio + EDU_ID_REG));
	writel(0, mmio + EDU_STATUS_REG);	/* no interrupt when done */
	writel(n, mmio + EDU_FACT_REG);
	for (tries = 0; readl(mmio + EDU_STATUS_REG) & EDU_BUSY; tries++) {
		if (tries == 1000) {
			err = -ETIMEDOUT;
			goto unmap;
		}
		usleep_range(100, 200);
	}
	result = readl(mmio + EDU_FACT_REG);
	pr_info("edu_poll: %u! = %u\n", n, result);
	return 0;

unmap:
	pci_iounmap(dev, mmio);
release:
	pci_release_region(dev, 0);
disable:
	pci_disable_device(dev);
	return err;
}

static void edu_poll_remove(struct pci_dev *dev)
{
	pci_iounmap(dev, mmio);
	pci_release_region(dev, 0);
	pci_disable_device(dev);
}

static const struct pci_device_id edu_poll_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8) },
	{ 0, }
};
MODULE_DEVICE_TABLE(pci, edu_poll_ids);

static struct pci_driver edu_poll_driver = {
	.name = "edu_poll",
	.id_table = edu_poll_ids,
	.probe = edu_poll_probe,
	.remove = edu_poll_remove,
};

static int __init edu_poll_init(void)
{
	return pci_register_driver(&edu_poll_driver);
}

static void __exit edu_poll_exit(void)
{
	pci_unregister_driver(&edu_poll_driver);
}

module_init(edu_poll_init);
module_exit(edu_poll_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("edu factorial by polling");
