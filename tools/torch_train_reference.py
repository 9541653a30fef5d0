#!/usr/bin/env python3
"""PyTorch reference for `ferc train` on the FER data: the same split (a ferc run's split.csv),
augmentation, optimizer and schedule as the resnet18 recipe of the first training run, for
comparing learning curves epoch by epoch. Usage (edit the paths and EPOCHS_RUN as needed):
    /usr/bin/python3 tools/torch_train_reference.py
"""
import csv, time, numpy as np, torch, torch.nn as nn, torch.nn.functional as F, torchvision, cv2
torch.manual_seed(1); torch.set_num_threads(2)
root='/work/shared/data/fer/Training/'
rows=list(csv.reader(open('/work/main/runs/resnet18-48/split.csv')))
hdr=rows[0]; rows=rows[1:]
classes=sorted(set(r[1] for r in rows)); cid={c:i for i,c in enumerate(classes)}
def load(split):
    X=[];Y=[]
    for r in rows:
        if r[2]!=split: continue
        X.append(cv2.imread(root+r[0],0)); Y.append(cid[r[1]])
    return torch.tensor(np.stack(X)).float().div(255).unsqueeze(1), torch.tensor(Y)
Xtr,Ytr=load('train'); Xva,Yva=load('val'); print(hdr, len(Ytr), len(Yva), classes)
m=0.5077; s=0.2057
import torchvision.transforms as T
aug=T.Compose([T.RandomCrop(48,padding=4,padding_mode='reflect'),T.RandomHorizontalFlip(),T.RandomRotation(10)])
net=torchvision.models.resnet18(num_classes=6)
E=40; B=64; spe=len(Ytr)//B
opt=torch.optim.SGD(net.parameters(),lr=0.1,momentum=0.9,weight_decay=5e-4)
sch=torch.optim.lr_scheduler.OneCycleLR(opt,max_lr=0.1,total_steps=E*spe)
erase=T.RandomErasing(p=0.25)
EPOCHS_RUN = 2  # of E; the schedule spans all E epochs
for ep in range(EPOCHS_RUN):
    net.train(); perm=torch.randperm(len(Ytr)); t0=time.time(); corr=0; tot=0; ls=0
    for k in range(spe):
        idx=perm[k*B:(k+1)*B]; x=torch.stack([aug(Xtr[i]) for i in idx]); x=(x-m)/s
        x=torch.stack([erase(v) for v in x]).repeat(1,3,1,1); y=Ytr[idx]
        out=net(x); loss=F.cross_entropy(out,y,label_smoothing=0.1)
        opt.zero_grad(); loss.backward(); opt.step(); sch.step()
        corr+=(out.argmax(1)==y).sum().item(); tot+=len(y); ls+=loss.item()*len(y)
    net.eval(); vc=0
    with torch.no_grad():
        for k in range(0,len(Yva),256):
            vc+=(net(((Xva[k:k+256]-m)/s).repeat(1,3,1,1)).argmax(1)==Yva[k:k+256]).sum().item()
    print(f"torch epoch {ep+1}: train loss {ls/tot:.4f} acc {corr/tot:.4f} val acc {vc/len(Yva):.4f} {time.time()-t0:.0f}s", flush=True)
